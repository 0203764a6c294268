# Sourced by scripts/ha-env and scripts/ha-current: find an interpreter the way a contributor has one.
#
#   find_python MINOR TEST   e.g. find_python 3.13 'sys.version_info[:2] == (3, 13)'
#
# Looks, in this order, at pyenv's versions MINOR.* (newest patch first; `pyenv root` or $PYENV_ROOT, shims or
# not), uv's managed CPython MINOR.* (`uv python find MINOR`, or uv's install dir when uv is not on PATH),
# `pythonMINOR` and `python3` on PATH. A candidate counts only
# when running it proves TEST and it can make a venv (ensurepip), so a shim or a stray path cannot fool us.
# Prints the first good one and returns 0; returns 1 with nothing printed when there is none.

python_ok() {  # python_ok PYTHON TEST
  [ -n "$1" ] && [ -x "$1" ] || return 1
  "$1" -c "import sys, venv, ensurepip; sys.exit(0 if ($2) else 1)" >/dev/null 2>&1
}

python_candidates() {  # python_candidates MINOR
  local minor=$1 root v
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  if [ -d "$root/versions" ]; then
    # Plain CPython builds only (3.13.0, 3.13.5 …; not 3.13t or 3.13-dev), newest first.
    for v in $(ls "$root/versions" | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -rV); do
      echo "$root/versions/$v/bin/python3"
    done
  fi
  if command -v uv >/dev/null 2>&1; then
    uv python find --managed-python "$minor" 2>/dev/null || uv python find "$minor" 2>/dev/null || true
  fi
  root=${UV_PYTHON_INSTALL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/uv/python}
  if [ -d "$root" ]; then
    for v in $(ls "$root" | grep -E "^cpython-${minor//./\\.}\.[0-9]+-" | sort -rV); do
      echo "$root/$v/bin/python3"
    done
  fi
  command -v "python$minor" || true
  command -v python3 || true
}

find_python() {  # find_python MINOR TEST
  local c
  while read -r c; do
    if python_ok "$c" "$2"; then
      echo "$c"
      return 0
    fi
  done < <(python_candidates "$1")
  return 1
}

python_version() {  # python_version PYTHON → 3.13.0
  "$1" -c 'import platform; print(platform.python_version())'
}
