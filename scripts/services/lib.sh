# shellcheck shell=bash
# Shared helpers for scripts/services/*.sh. Sourced, not executed.
#
# Everything a service needs at run time (downloaded jars, generated configs, data, logs, pid files)
# lives under $CHATIFY_CACHE, never inside the repository, so a `git clean` or a parallel checkout
# cannot corrupt a running service and CI can cache one directory.
#
#   $CACHE/lib/<name>/      jars resolved from Maven Central (+ .coords marker)
#   $CACHE/conf/<svc>/      generated config files (rewritten on every start)
#   $CACHE/data/<svc>[-ver] service data (kept between starts; delete it to reset)
#   $CACHE/logs/<svc>.log   stdout/stderr of the service
#   $CACHE/run/<svc>.pid    pid of the running service
#   $CACHE/locks/<name>.lock  flock files: one per service (start/stop/fetch), apt.lock (apt-get)

CHATIFY_CACHE="${CHATIFY_CACHE:-$HOME/.cache/chatify}"
mkdir -p "$CHATIFY_CACHE"
# absolute: the paths end up in configs and in file:// URLs read by processes with another cwd
CACHE="$(cd "$CHATIFY_CACHE" && pwd)"
# shellcheck disable=SC2034  # used by all.sh
SERVICES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$CACHE"/{lib,conf,data,logs,run,tmp,locks}

# Set by each service script before using the helpers below.
SERVICE="${SERVICE:-services}"

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$SERVICE" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

svc_pidfile() { printf '%s/run/%s.pid\n' "$CACHE" "${1:-$SERVICE}"; }
svc_logfile() { printf '%s/logs/%s.log\n' "$CACHE" "${1:-$SERVICE}"; }

# svc_lock: takes the exclusive lock $CACHE/locks/$SERVICE.lock and holds it until the script
# exits. `start`, `stop` and `fetch` take it first, so two concurrent starts (two test files
# starting Kafka at once) never spawn a second, untracked process: the second waits for the first,
# then finds the service running. The lock lives on fd 9 and is released by the kernel when the
# script ends, however it ends; every daemon is spawned with fd 9 closed (`9>&-`), or it would hold
# the lock for its whole life.
# CHATIFY_LOCK_TIMEOUT (600 s): how long to wait for the holder (a first Kafka start may download).
svc_lock() {
  local timeout="${CHATIFY_LOCK_TIMEOUT:-600}" lockfile="$CACHE/locks/$SERVICE.lock"
  command -v flock >/dev/null 2>&1 || die "flock (util-linux) is required"
  exec 9>>"$lockfile"
  flock -n 9 && return 0
  log "another start/stop of $SERVICE holds $lockfile; waiting for it (up to ${timeout}s)"
  flock -w "$timeout" 9 || die "still locked after ${timeout}s: $lockfile (set CHATIFY_LOCK_TIMEOUT)"
}

# now_ms: wall clock in milliseconds, for the startup timings we print.
now_ms() { date +%s%3N; }

# proc_running <pid>: the process exists and is not a zombie. Daemons here are reparented to PID 1,
# which may reap them a second or two late; a zombie has exited and must not count as running.
proc_running() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]
}

# pid_alive <pidfile> [cmdline-substring]
# Prints the pid and returns 0 when the pid recorded in <pidfile> is a live process. With a
# substring, the process's command line must also contain it: pids get reused, and after a reboot
# or a killed container a stale pid file may point at some unrelated process.
pid_alive() {
  local pidfile="$1" marker="${2:-}" pid
  [ -s "$pidfile" ] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [ -n "$pid" ] || return 1
  proc_running "$pid" || return 1
  if [ -n "$marker" ] && [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
  fi
  printf '%s\n' "$pid"
}

# clear_stale_pidfile <pidfile> [marker]: removes a pid file whose process is gone.
clear_stale_pidfile() {
  local pidfile="$1" marker="${2:-}"
  if [ -e "$pidfile" ] && ! pid_alive "$pidfile" "$marker" >/dev/null; then
    log "removing stale pid file $pidfile (pid $(cat "$pidfile" 2>/dev/null || echo '?') is gone or is not ours)"
    rm -f "$pidfile"
  fi
}

# stop_pidfile <pidfile> <timeout-seconds> [marker]
# TERM, wait up to the timeout for the process to exit, then KILL. A no-op when nothing runs.
stop_pidfile() {
  local pidfile="$1" timeout="$2" marker="${3:-}" pid i
  if ! pid="$(pid_alive "$pidfile" "$marker")"; then
    clear_stale_pidfile "$pidfile" "$marker"
    log "not running"
    return 0
  fi
  log "stopping pid $pid (SIGTERM, up to ${timeout}s)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    proc_running "$pid" || break
    sleep 0.1
  done
  if proc_running "$pid"; then
    log "pid $pid still alive after ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
  log "stopped"
}

# port_in_use <port>: true when something accepts TCP connections on 127.0.0.1:<port>.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_running <pidfile> [marker]: `wait` on a service nobody started fails at once, not after
# the whole timeout (start already waits; `wait` is for a start that is running elsewhere).
require_running() {
  pid_alive "$1" "${2:-}" >/dev/null || die "not running (run: $0 start)"
}

# wait_for <description> <timeout-seconds> <command...>
# Runs the command every 0.25 s until it succeeds. Fails with the tail of $WAIT_LOG when the timeout
# runs out, or at once when the process recorded in $WAIT_PIDFILE has died (no point waiting 3
# minutes for a JVM that crashed in the first second).
wait_for() {
  local desc="$1" timeout="$2"
  shift 2
  local start now elapsed
  start="$(now_ms)"
  while :; do
    if "$@" >/dev/null 2>&1; then
      now="$(now_ms)"
      elapsed="$(( (now - start) / 1000 )).$(( (now - start) % 1000 / 100 ))"
      log "$desc: ready (waited ${elapsed}s)"
      return 0
    fi
    if [ -n "${WAIT_PIDFILE:-}" ] && ! pid_alive "$WAIT_PIDFILE" >/dev/null; then
      log "ERROR: $desc: the process died while we waited for it"
      _wait_tail_log
      return 1
    fi
    now="$(now_ms)"
    if (( now - start >= timeout * 1000 )); then
      log "ERROR: $desc: not ready after ${timeout}s"
      _wait_tail_log
      [ -z "${WAIT_PIDFILE:-}" ] || ! pid_alive "$WAIT_PIDFILE" >/dev/null ||
        log "the process is still running (pid $(cat "$WAIT_PIDFILE")); '$0 stop' stops it"
      return 1
    fi
    sleep 0.25
  done
}

_wait_tail_log() {
  if [ -n "${WAIT_LOG:-}" ] && [ -f "$WAIT_LOG" ]; then
    log "last 40 lines of $WAIT_LOG:"
    tail -n 40 "$WAIT_LOG" | sed 's/^/    /' >&2
  fi
}

# fetch_maven_jars <name> <groupId:artifactId:version> [more coords...]
# Resolves the runtime dependency closure of the coordinates into $CACHE/lib/<name>/ with a
# throwaway pom.xml. Idempotent: skipped when the marker records exactly these coordinates, so a
# cached start never talks to the registry. Maven's own cache (~/.m2) is used as usual.
fetch_maven_jars() {
  local name="$1"
  shift
  [ $# -gt 0 ] || die "fetch_maven_jars: no coordinates for $name"
  local dir="$CACHE/lib/$name" marker want
  marker="$dir/.coords"
  want="$(printf '%s\n' "$@")"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is required to download $name"
  log "resolving $name from Maven: $*"
  local tmp deps="" coord g a v rest start
  start="$(now_ms)"
  tmp="$(mktemp -d "$CACHE/tmp/pom-$name.XXXXXX")"
  for coord in "$@"; do
    IFS=: read -r g a v rest <<<"$coord"
    if [ -z "$g" ] || [ -z "$a" ] || [ -z "$v" ] || [ -n "$rest" ]; then
      die "bad coordinate '$coord' (want groupId:artifactId:version)"
    fi
    deps+="    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>
"
  done
  cat >"$tmp/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- throwaway: generated by scripts/services/lib.sh to download $name -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>chatify.services</groupId>
  <artifactId>fetch-$name</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
$deps  </dependencies>
  <build>
    <plugins>
      <!-- pinned: Maven 3.8's default (2.8) is ancient; 3.8.1 still runs on Maven 3.6.3+ -->
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
  # Resolve into a temp dir and swap it in, so an interrupted download never looks complete.
  rm -rf "$dir.new"
  local mvn_opts=()
  # CHATIFY_MAVEN_REPO: a separate local repository (a clean CI cache, or a cold-start measurement)
  [ -z "${CHATIFY_MAVEN_REPO:-}" ] || mvn_opts+=("-Dmaven.repo.local=$CHATIFY_MAVEN_REPO")
  if ! mvn -q -B "${mvn_opts[@]}" -f "$tmp/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$dir.new" >"$tmp/mvn.log" 2>&1; then
    log "ERROR: Maven could not resolve $name; last lines of its output:"
    tail -n 30 "$tmp/mvn.log" | sed 's/^/    /' >&2
    rm -rf "$dir.new"
    return 1
  fi
  rm -rf "$dir"
  mv "$dir.new" "$dir"
  printf '%s\n' "$want" >"$marker"
  rm -rf "$tmp"
  log "resolved $name: $(find "$dir" -name '*.jar' | wc -l) jars, $(du -sh "$dir" | cut -f1) in $(( ($(now_ms) - start) / 1000 ))s"
}

# ensure_apt <package...>: installs the Debian packages that are missing (we run as root; sudo is
# used when not). `apt-get update` runs once first when the package lists are empty, and once more
# if the install fails (stale lists name versions the mirror no longer has).
ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  # One apt-get at a time: two services started at once (or a test installing shellcheck) would
  # fail on dpkg's lock. Fd 8, closed again below; apt-get runs without 8 and 9 (see svc_lock),
  # so a daemon a package's postinst may start cannot hold our locks.
  exec 8>>"$CACHE/locks/apt.lock"
  flock -w "${CHATIFY_LOCK_TIMEOUT:-600}" 8 || die "another apt-get of ours holds $CACHE/locks/apt.lock"
  local rc=0
  _ensure_apt_locked "${missing[@]}" || rc=$?
  exec 8>&-
  return "$rc"
}

_ensure_apt_locked() {
  local missing=() p
  # again under the lock: whoever held it may just have installed them
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get install ${missing[*]}"
  local aptlog="$CACHE/logs/apt.log"
  if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' 2>/dev/null | grep -q .; then
    "${sudo[@]}" apt-get update -qq >>"$aptlog" 2>&1 8>&- 9>&- || true
  fi
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 8>&- 9>&-; then
    "${sudo[@]}" apt-get update -qq >>"$aptlog" 2>&1 8>&- 9>&- || true
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 8>&- 9>&-; then
      log "ERROR: apt-get install ${missing[*]} failed; last lines of $aptlog:"
      tail -n 20 "$aptlog" | sed 's/^/    /' >&2
      return 1
    fi
  fi
}

# java_bin: the `java` to run the JVM services with (CHATIFY_JAVA overrides; Java 17 expected).
java_bin() { printf '%s\n' "${CHATIFY_JAVA:-java}"; }

# java_major <java>: prints the feature version (17 for 17.0.15), from the JVM itself.
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p' | sed 's/^1\.//; s/\..*//'
}

# rotate_log <file>: keep one old generation once a log passes 20 MB (logs are appended per start).
rotate_log() {
  local f="$1"
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((20 * 1024 * 1024)) ]; then
    mv -f "$f" "$f.1"
  fi
}

# spawn_daemon <pidfile> <logfile> <command...>
# Starts the command detached (own session, so Ctrl-C in the calling terminal or the caller's
# process group being killed does not take it down), stdout/stderr appended to <logfile>, and
# records the pid of the command itself (exec), not of a wrapper shell.
spawn_daemon() {
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  rotate_log "$logfile"
  printf '\n===== %s: starting: %s\n' "$(date '+%F %T')" "$*" >>"$logfile"
  # 9>&-: the daemon must not inherit the service lock (svc_lock)
  # shellcheck disable=SC2016  # expanded by the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [ -s "$pidfile" ] && return 0
    sleep 0.1
  done
  die "could not start: $*"
}

# usage_main <script-name>: common usage text.
usage_main() {
  printf 'usage: %s start|stop|status|wait|fetch%s\n' "$1" "${2:-}" >&2
  exit 2
}
