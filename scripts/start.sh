#!/usr/bin/env bash
# Runs Chatify on the embedded default (no external services) on PORT (default 8080).
# Installs pnpm and the dependencies on a fresh clone, builds, then starts the server.
# Ctrl-C (SIGINT) or SIGTERM stops it gracefully.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
install_dependencies
build
cd "$CHATIFY_ROOT"
log "starting on port ${PORT:-8080} (data in ${CHATIFY__EMBEDDED__DATADIRECTORY:-./data})"
exec node packages/server/dist/main.js
