#!/usr/bin/env bash
# The browser tests check every page with axe-core (an npm package, pinned in package.json and
# package-lock.json, test-only: nothing under node_modules/ is served). Install it with npm when it is
# missing or not the locked version; install npm with apt when we can and it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
locked=$(sed -n '/"node_modules\/axe-core"/,/}/s/.*"version": "\([^"]*\)".*/\1/p' package-lock.json)
installed=$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' node_modules/axe-core/package.json 2>/dev/null || true)
[ -n "$locked" ] && [ "$locked" = "$installed" ] && exit 0
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing npm for the browser tests' axe-core (apt-get install npm)"
    apt-get update -q >/dev/null && apt-get install -y -q npm >/dev/null
  else
    echo "The browser tests need axe-core from npm: install Node.js and npm, then run 'npm ci'." >&2
    exit 1
  fi
fi
echo "Installing axe-core $locked for the browser tests (npm ci)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
