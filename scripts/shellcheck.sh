#!/usr/bin/env bash
# Runs shellcheck (Debian package, installed with apt when missing) on every shell script of the
# repository, or on the files given. Every severity counts (style included); exits non-zero on any
# finding. Settings: .shellcheckrc at the root (sourced helpers are followed from the script's dir).
#   scripts/shellcheck.sh            every script: *.sh, and files whose shebang names a shell
#   scripts/shellcheck.sh --list     print the scripts it would check, check nothing
#   scripts/shellcheck.sh FILE...    only these
set -euo pipefail
SERVICE=shellcheck
source "$(dirname "$0")/services/lib.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# repo_files: the repository's files, relative to ROOT (git's view when it is a checkout, so that
# node_modules and other ignored files stay out; a plain find otherwise).
repo_files() {
  if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files --cached --others --exclude-standard
  else
    (cd "$ROOT" && find . \( -name node_modules -o -name .git -o -name dist \) -prune -o -type f -print |
      sed 's|^\./||')
  fi
}

# shell_scripts: *.sh, and extensionless files whose first line is a sh/bash shebang (.ci/run)
shell_scripts() {
  local f
  repo_files | sort -u | while IFS= read -r f; do
    [ -f "$ROOT/$f" ] || continue  # deleted in the worktree but still in the index
    case "${f##*/}" in
      *.sh) printf '%s\n' "$f" ;;
      *.*) ;;
      *) head -n 1 "$ROOT/$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba|da)?sh( |$)' && printf '%s\n' "$f" ;;
    esac
  done
}

if [ "${1:-}" = --list ]; then
  shell_scripts
  exit 0
fi

command -v shellcheck >/dev/null 2>&1 || ensure_apt shellcheck

if [ $# -gt 0 ]; then
  files=("$@")
else
  files=()
  while IFS= read -r f; do files+=("$ROOT/$f"); done < <(shell_scripts)
  [ ${#files[@]} -gt 0 ] || die "no shell scripts found under $ROOT"
fi
log "$(shellcheck --version | sed -n 's/^version: /shellcheck /p') on ${#files[@]} file(s)"
# --severity=style: every finding counts; targeted `# shellcheck disable=SCxxxx  # reason` only
shellcheck --severity=style "${files[@]}"
log "clean"
