#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (Django 6.1 needs it), or explain what to install and fail.
set -euo pipefail
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=(python3.13 python3.12 python3.14 python3)
for root in "${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv /opt/pyenv; do
  for v in 3.13 3.12 3.14; do
    for p in "$root"/versions/"$v"*/bin/python3; do [ -x "$p" ] && candidates+=("$p"); done
  done
done
for c in "${candidates[@]}"; do
  path=$(command -v "$c" 2>/dev/null) || continue
  if "$path" -c 'import sys, venv, sqlite3, ssl; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo "comfytrack needs Python 3.12 or newer (Django 6.1), with venv, sqlite3 and ssl." >&2
echo "Install one (e.g. 'pyenv install 3.13' or your OS's python3.13 package), or point PYTHON=/path/to/python3.13." >&2
exit 1
