#!/usr/bin/env bash
# Fails when the committed generated code is not what scripts/generate_protos.sh
# makes from proto/ (someone edited a .proto without regenerating, or edited the
# generated code by hand). It regenerates into the tree, so after a failure the
# tree holds the right code: review it and commit it.
#
# It compares the generated package before and after regenerating (in a clean
# clone, as in CI, that is exactly "regenerating changes nothing against the
# commit"; in a working tree it also accepts regenerated code not committed yet),
# and in CI it also requires the package to be committed as it is.
# The generator's venv is kept under .cache/ (PROTOGEN_VENV overrides it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rel=client/python/src/taskservice_client/_proto
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
cp -a "$rel/." "$before/"
if ! log=$(bash scripts/generate_protos.sh 2>&1); then
  echo "$log" >&2
  echo "error: scripts/generate_protos.sh failed" >&2
  exit 1
fi
find "$before" "$rel" -name __pycache__ -prune -exec rm -rf {} +
if ! diff -ru "$before" "$rel" > "$before.diff" 2>&1; then
  sed "s|$before|$rel (before)|g" "$before.diff"
  rm -f "$before.diff"
  echo "error: $rel is out of date with proto/: run 'bash scripts/generate_protos.sh' and commit the result" >&2
  exit 1
fi
rm -f "$before.diff"
if [ "${CI:-}" = true ] && [ -n "$(git status --porcelain -- "$rel")" ]; then
  git status --porcelain -- "$rel"
  git --no-pager diff -- "$rel"
  echo "error: $rel differs from what is committed" >&2
  exit 1
fi
echo "ok: $rel matches proto/"
