#!/usr/bin/env bash
# Prints a development access token for a user, signed with CHATIFY__AUTH__HS256SECRET (and with
# CHATIFY__AUTH__ISSUER / __AUDIENCE when set), valid for ttl-seconds (default 3600; 0 or negative
# mints an already expired token). --help explains, with the server's clock skew.
#   CHATIFY__AUTH__HS256SECRET=… ./scripts/mint-token.sh alice [ttl-seconds]
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
# Beside a ./scripts/start.sh that still installs or builds, install_dependencies and build wait for
# it (setup.sh's lock), and so does a built CLI that start.sh may be rebuilding.
if [ ! -f "$CHATIFY_ROOT/packages/server/dist/cli/mintToken.js" ]; then
  install_dependencies
  build
else
  in_root_locked true
fi
exec node "$CHATIFY_ROOT/packages/server/dist/cli/mintToken.js" "$@"
