#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run calls exactly this) and as a developer
# runs it from a clone: installs what is missing, then lint, types, the generated
# code, the proto contract, and the test suite. Each phase prints its time.
#
#   bash scripts/test.sh              # everything
#   bash scripts/test.sh -k elicit    # extra arguments go to pytest
#
# Environment: PYTHON (python3), VENV (.venv), BUF_BREAKING_AGAINST (a buf input
# to compare the protos with instead of the main branch, e.g. '.git#ref=HEAD~1').
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/_venv.sh
. "$root/scripts/_venv.sh"

phase_start=$SECONDS
total_start=$SECONDS
timings=()
phase() {
  local now=$SECONDS
  if [ -n "${phase_name:-}" ]; then
    timings+=("$(printf '%4ss  %s' $((now - phase_start)) "$phase_name")")
  fi
  phase_name=$1
  phase_start=$now
  [ -n "$phase_name" ] && printf '\n==== %s\n' "$phase_name"
  return 0
}
report_timings() {
  local rc=$?
  phase ""
  printf '\n==== timings (exit %s)\n' "$rc"
  printf '%s\n' "${timings[@]}"
  printf '%4ss  total\n' $((SECONDS - total_start))
  # pytest's closing line last, so that it closes the run's output too.
  if [ -s "${pytest_log:-}" ]; then
    printf '\n'
    tail -n 1 "$pytest_log"
  fi
  rm -f "${pytest_log:-}"
}
trap report_timings EXIT

phase "setup: python venv"
ensure_venv
py="$venv/bin/python"

phase "setup: redis-server"
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
redis-server --version

phase "setup: buf (npm ci)"
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/.bin/buf ] || [ "$(cat node_modules/.taskservice-lock 2>/dev/null)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.taskservice-lock
fi
buf() { "$root/node_modules/.bin/buf" "$@"; }
buf --version

# The Node worker stub (client/node) and the Node side of tests/node (the
# TypeScript MCP SDK client): `npm ci` again only when a lockfile changed.
phase "setup: node packages (npm ci in client/node, tests/node)"
npm_ci_in() {
  local dir=$1 sum
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ ! -d "$dir/node_modules" ] || [ "$(cat "$dir/node_modules/.taskservice-lock" 2>/dev/null)" != "$sum" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$sum" > "$dir/node_modules/.taskservice-lock"
  fi
  echo "$dir: node_modules matches package-lock.json"
}
npm_ci_in client/node
npm_ci_in tests/node
node --version

# The checks all run, even after one failed, so that one run shows every problem;
# the script fails at the end when any of them did.
failed=()
check() {
  local name=$1
  shift
  phase "$name"
  local rc=0
  "$@" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAILED: $name (exit $rc)" >&2
    failed+=("$name")
  fi
  return 0
}

breaking() {
  local against=${BUF_BREAKING_AGAINST:-} head base ref
  if [ -z "$against" ]; then
    head=$(git rev-parse -q --verify HEAD || true)
    for ref in refs/heads/main refs/remotes/origin/main; do
      base=$(git rev-parse -q --verify "$ref^{commit}" || true)
      [ -n "$base" ] || continue
      if [ "$base" = "$head" ]; then
        # On main itself (as in CI): check the newest change to proto/ against the
        # contract just before it.
        local last
        last=$(git log -1 --format=%H -- proto || true)
        if [ -n "$last" ] && git rev-parse -q --verify "$last^" >/dev/null; then
          against=".git#ref=$last^"
          echo "note: ${ref#refs/*/} is HEAD; comparing the last change to proto/ (${last:0:12}) with its parent"
          break
        fi
        echo "note: ${ref#refs/*/} is HEAD and proto/ has no earlier version; buf breaking skipped"
        return 0
      fi
      against=".git#ref=$ref"
      break
    done
  fi
  if [ -z "$against" ]; then
    echo "note: no main branch in this clone; buf breaking skipped"
    return 0
  fi
  case $against in
    *depth=*) ;;
    .git\#*)
      # buf clones a git input 50 commits deep by default: the ref compared with may be older.
      against="$against,depth=$(git rev-list --count --all)"
      ;;
  esac
  echo "buf breaking --against '$against'"
  buf breaking --against "$against"
}

pytest_log=$(mktemp)
run_pytest() {
  "$py" -m pytest -q "$@" 2>&1 | tee "$pytest_log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests" >&2
  fi
  return "$rc"
}

check "ruff check" "$py" -m ruff check .
check "mypy (strict)" "$py" -m mypy
check "generated code and docs are up to date" bash scripts/check_generated.sh
check "buf lint" buf lint
check "buf breaking" breaking
check "node worker stub (client/node: npm test)" env TASKSERVICE_BIN="$venv/bin/taskservice" \
  npm --prefix client/node test --silent
check "pytest" run_pytest "$@"

phase ""
if [ "${#failed[@]}" != 0 ]; then
  printf '\nFAILED checks: %s\n' "$(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" >&2
  exit 1
fi
printf '\nall checks passed\n'
