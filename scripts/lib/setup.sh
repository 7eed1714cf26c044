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
  (cd "$CHATIFY_ROOT" && "${PNPM[@]}" install --frozen-lockfile --reporter=append-only >&2)
}

build() {
  (cd "$CHATIFY_ROOT" && "${PNPM[@]}" run --silent build >&2)
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
