# Sourced by scripts/test.sh and scripts/serve.sh: creates (or reuses) the
# project's venv at $root/.venv and installs the worker stub and the service
# (editable, with the dev extras) into it. Re-installs only when a pyproject.toml
# changed since the last install, so a reused venv costs nothing.
#
# Expects $root (the repository root). Honours PYTHON (default python3) and
# VENV (default $root/.venv).

ensure_venv() {
  local python=${PYTHON:-python3}
  venv=${VENV:-"$root/.venv"}
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv with $("$python" --version 2>&1)"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
      # Debian ships venv/ensurepip separately.
      rm -rf "$venv"
      apt_install "python3-venv"
      "$python" -m venv "$venv"
    fi
  fi
  local stamp="$venv/.taskservice-deps"
  local want
  want=$(cat "$root/pyproject.toml" "$root/client/python/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing ./client/python and .[dev] into $venv"
    (cd "$root" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -e ./client/python -e '.[dev]')
    echo "$want" > "$stamp"
  fi
}

# apt_install PACKAGE...: installs Debian packages (root, or through sudo).
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "==> apt-get install $*"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
