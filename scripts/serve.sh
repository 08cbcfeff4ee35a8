#!/usr/bin/env bash
# Installs what the service needs into .venv (first run only) and runs
# `taskservice serve`; arguments go to it, e.g. `bash scripts/serve.sh --no-mcp`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/_venv.sh
. "$root/scripts/_venv.sh"
ensure_venv
exec "$venv/bin/taskservice" serve "$@"
