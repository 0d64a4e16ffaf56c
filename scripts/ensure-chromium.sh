#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser download is
# not available everywhere). Install it when missing and we can; otherwise say what to do.
set -euo pipefail
browser="${COMFYTRACK_CHROMIUM:-/usr/bin/chromium}"
[ -x "$browser" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Chromium for the browser tests (apt-get install chromium)"
  apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null
  exit 0
fi
echo "The browser tests need Chromium at $browser: install it (e.g. 'sudo apt-get install chromium')" >&2
echo "or point COMFYTRACK_CHROMIUM at a Chromium/Chrome binary." >&2
exit 1
