#!/usr/bin/env bash
# Fails when what scripts/generate_protos.sh makes from proto/ is not what is
# committed: the Python code, docs/proto-reference.md and client/node/proto
# (someone edited a .proto without regenerating, or edited the output by hand;
# it also fails when an element of the contract has no comment). It regenerates
# into the tree, so after a failure the tree holds the right output: review it
# and commit it.
#
# It compares the outputs before and after regenerating (in a clean clone, as in
# CI, that is exactly "regenerating changes nothing against the commit"; in a
# working tree it also accepts regenerated output not committed yet), and in CI
# it also requires them to be committed as they are.
# The generator's venv is kept under .cache/ (PROTOGEN_VENV overrides it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
outputs=(client/python/src/taskservice_client/_proto docs/proto-reference.md client/node/proto)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for rel in "${outputs[@]}"; do
  mkdir -p "$before/$(dirname "$rel")"
  if [ -e "$rel" ]; then cp -a "$rel" "$before/$rel"; fi
done
if ! log=$(bash scripts/generate_protos.sh 2>&1); then
  echo "$log" >&2
  echo "error: scripts/generate_protos.sh failed" >&2
  exit 1
fi
status=0
for rel in "${outputs[@]}"; do
  find "$before/$rel" "$rel" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
  if ! diff -ru "$before/$rel" "$rel" > "$before.diff" 2>&1; then
    sed "s|$before/||g" "$before.diff"
    echo "error: $rel is out of date with proto/: run 'bash scripts/generate_protos.sh' and commit the result" >&2
    status=1
  fi
  rm -f "$before.diff"
done
if [ "${CI:-}" = true ] && [ -n "$(git status --porcelain -- "${outputs[@]}")" ]; then
  git status --porcelain -- "${outputs[@]}"
  git --no-pager diff -- "${outputs[@]}"
  echo "error: the generated output differs from what is committed" >&2
  status=1
fi
[ "$status" = 0 ] && echo "ok: ${outputs[*]} match proto/"
exit "$status"
