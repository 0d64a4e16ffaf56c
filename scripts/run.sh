#!/usr/bin/env bash
# Migrate the embedded SQLite default, make sure an admin login exists, then serve the app on
# 127.0.0.1 together with the django-q2 cluster (scripts/serve.py). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
export PORT="${PORT:-8000}"
# Links in alert messages and webhooks need an absolute base; locally it is this server.
export COMFYTRACK_PUBLIC_URL="${COMFYTRACK_PUBLIC_URL:-http://127.0.0.1:$PORT}"
PY=.venv/bin/python
$PY manage.py migrate --no-input -v 0
$PY manage.py ensure_admin
# The demo (COMFYTRACK_DEMO, on with DEBUG): the Simulator provider + a trickle of demo runs, as an
# extra child of serve.py. COMFYTRACK_DEMO=false turns it off.
if [ -z "${COMFYTRACK_EXTRA_PROCESS:-}" ] && [ "$($PY manage.py demo --enabled)" = "on" ]; then
  export COMFYTRACK_EXTRA_PROCESS="$PY manage.py demo --port ${COMFYTRACK_DEMO_PORT:-8189}"
  echo "Demo on: sign in with the admin login and pick the Demo organization (COMFYTRACK_DEMO=false turns it off)"
fi
echo "comfytrack on http://127.0.0.1:$PORT/  (admin: http://127.0.0.1:$PORT/admin/) — Ctrl-C stops it"
exec $PY scripts/serve.py
