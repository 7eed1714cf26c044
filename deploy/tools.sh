#!/usr/bin/env bash
# The offline validators of deploy/, installed once into the cache (idempotent, safe to run at once
# from two processes): kustomize, built from its Go module, and kubernetes-validate from PyPI in a
# virtualenv (it ships the Kubernetes JSON schemas, so validating needs no network).
#   deploy/tools.sh install    install what is missing (./scripts/test.sh does this)
#   deploy/tools.sh paths      install what is missing, then print KUSTOMIZE=… and KUBERNETES_VALIDATE=…
set -euo pipefail
KUSTOMIZE_VERSION=v5.8.1 # needs Go 1.24+ (v5.8.2+ need newer Go than the machines have)
DEPLOY_DIR="$(cd "$(dirname "$0")" && pwd)"
CACHE="${CHATIFY_CACHE:-$HOME/.cache/chatify}"
TOOLS="$CACHE/tools"
KUSTOMIZE="$TOOLS/kustomize-$KUSTOMIZE_VERSION/kustomize"
VALIDATE_VERSION="$(sed -n 's/^kubernetes-validate==//p' "$DEPLOY_DIR/validate-requirements.txt")"
VENV="$TOOLS/kubernetes-validate-$VALIDATE_VERSION"
KUBERNETES_VALIDATE="$VENV/bin/kubernetes-validate"

log() { printf '[chatify] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

install_kustomize() {
  [ -x "$KUSTOMIZE" ] && return 0
  command -v go >/dev/null 2>&1 || die "Go 1.24+ is needed to build kustomize (https://go.dev/dl/)"
  log "building kustomize $KUSTOMIZE_VERSION from its Go module (once; about a minute)"
  local staging
  staging="$(mktemp -d "$TOOLS/kustomize.XXXXXX")"
  # GOTOOLCHAIN=local: build with the Go that is here, never download another toolchain
  GOBIN="$staging" GOTOOLCHAIN=local GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  mkdir -p "$(dirname "$KUSTOMIZE")"
  mv "$staging/kustomize" "$KUSTOMIZE"
  rmdir "$staging"
}

install_kubernetes_validate() {
  # the marker is written last: a virtualenv left half-made by an interrupted install is made again
  [ -f "$VENV/.installed" ] && return 0
  command -v python3 >/dev/null 2>&1 || die "Python 3 is needed for kubernetes-validate"
  log "installing kubernetes-validate $VALIDATE_VERSION into $VENV (once)"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 keeps venv in a package of its own
    command -v apt-get >/dev/null 2>&1 || die "python3 -m venv failed: install Python's venv module"
    apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$DEPLOY_DIR/validate-requirements.txt" >&2 ||
    die "pip could not install $DEPLOY_DIR/validate-requirements.txt"
  touch "$VENV/.installed"
}

install() {
  mkdir -p "$TOOLS" "$CACHE/locks"
  # one installer at a time (two test processes may ask at once)
  exec 9>"$CACHE/locks/deploy-tools.lock"
  flock -w 900 9 || die "another deploy/tools.sh install held the lock for 15 minutes"
  install_kustomize
  install_kubernetes_validate
  exec 9>&-
}

case "${1:-}" in
  install) install ;;
  paths)
    install
    printf 'KUSTOMIZE=%s\nKUBERNETES_VALIDATE=%s\n' "$KUSTOMIZE" "$KUBERNETES_VALIDATE"
    ;;
  *) die "usage: deploy/tools.sh install|paths" ;;
esac
