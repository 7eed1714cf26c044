# shellcheck shell=bash
# Shared by start.sh and test.sh: make a fresh clone runnable (pnpm, dependencies, build).
# Sourced, not executed.

CHATIFY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHATIFY_CACHE="${CHATIFY_CACHE:-$HOME/.cache/chatify}"
PNPM_VERSION="12.4.2"

log() { printf '[chatify] %s\n' "$*" >&2; }

ensure_node() {
  command -v node >/dev/null 2>&1 || { log "Node.js 20+ is required"; exit 1; }
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || { log "Node.js 20+ is required (found $(node --version))"; exit 1; }
}

ensure_pnpm() {
  if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    PNPM=(pnpm)
    return
  fi
  if [ -x "$CHATIFY_CACHE/pnpm/bin/pnpm" ]; then
    PNPM=("$CHATIFY_CACHE/pnpm/bin/pnpm")
    return
  fi
  log "installing pnpm $PNPM_VERSION"
  if npm install -g -E "pnpm@$PNPM_VERSION" >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    PNPM=(pnpm)
  else
    # no rights for a global install: keep a private copy in the cache
    mkdir -p "$CHATIFY_CACHE/pnpm"
    npm install -E --prefix "$CHATIFY_CACHE/pnpm" "pnpm@$PNPM_VERSION" >/dev/null
    mkdir -p "$CHATIFY_CACHE/pnpm/bin"
    ln -sf "$CHATIFY_CACHE/pnpm/node_modules/.bin/pnpm" "$CHATIFY_CACHE/pnpm/bin/pnpm"
    PNPM=("$CHATIFY_CACHE/pnpm/bin/pnpm")
  fi
}

install_dependencies() {
  ensure_node
  ensure_pnpm
  # better-sqlite3 compiles from source when no prebuilt binary can be fetched; point node-gyp at
  # the headers that come with Node instead of downloading them.
  if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
    export npm_config_nodedir=/usr
  fi
  in_root_locked "${PNPM[@]}" install --frozen-lockfile --reporter=append-only >&2
}

build() {
  in_root_locked "${PNPM[@]}" run --silent build >&2
}

# Runs a command in CHATIFY_ROOT holding this checkout's setup lock, so that one install or build
# runs at a time: start.sh, test.sh and mint-token.sh may run side by side (the authentication
# walkthrough mints a token while start.sh, in the background, still installs and builds). The lock
# is on fd 7 of a subshell, closed for the command: nothing the command leaves running holds it.
# Without flock (util-linux) the command runs unlocked.
in_root_locked() {
  if ! command -v flock >/dev/null 2>&1; then (cd "$CHATIFY_ROOT" && "$@"); return; fi
  local lockfile
  lockfile="$CHATIFY_CACHE/locks/setup-$(printf '%s' "$CHATIFY_ROOT" | cksum | cut -d ' ' -f 1).lock"
  mkdir -p "$CHATIFY_CACHE/locks"
  (
    if ! flock -n 7; then
      log "waiting for another install or build of $CHATIFY_ROOT to finish"
      flock -w "${CHATIFY_LOCK_TIMEOUT:-1800}" 7 || { log "still locked after ${CHATIFY_LOCK_TIMEOUT:-1800}s: $lockfile"; exit 1; }
    fi
    cd "$CHATIFY_ROOT" && "$@" 7>&-
  ) 7>>"$lockfile"
}

# The browser that the web page's tests drive (packages/web/test/browser.test.ts): Debian's
# chromium, installed with apt when missing, as the service scripts install their packages.
# CHATIFY_CHROMIUM names another Chromium binary instead.
ensure_test_browser() {
  if [ -n "${CHATIFY_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then return 0; fi
  log "installing Debian's chromium for the web page's browser tests"
  # shellcheck source=../services/lib.sh
  (SERVICE=chromium && source "$CHATIFY_ROOT/scripts/services/lib.sh" && ensure_apt chromium)
}
