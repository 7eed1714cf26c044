#!/usr/bin/env bash
# Redis, Kafka, Cassandra, OpenSearch and Jaeger together (see the per-service scripts for ports and
# env vars; Jaeger's first fetch builds it from its Go module, a few CPU-minutes).
#   scripts/services/all.sh start|stop|status|wait|fetch
# start: installs/downloads one service after another (apt's dpkg lock and Maven's local repository
# do not like concurrent writers), then starts them in parallel, since each mostly waits on
# its own JVM; prints the total time and each service's RSS.
# No lock of its own: each <svc>.sh start/stop/fetch holds that service's lock, so an all.sh start
# beside a redis.sh start (or another all.sh) still leaves one process per service.
set -euo pipefail
SERVICE=all
source "$(dirname "$0")/lib.sh"

SERVICES=(redis kafka cassandra opensearch jaeger)

# run_parallel <action>: runs <svc>.sh <action> for every service at once; fails if any failed.
run_parallel() {
  local action="$1" svc rc=0
  local -A pids=()
  for svc in "${SERVICES[@]}"; do
    "$SERVICES_DIR/$svc.sh" "$action" &
    pids[$svc]=$!
  done
  for svc in "${SERVICES[@]}"; do
    if ! wait "${pids[$svc]}"; then
      log "ERROR: $svc $action failed"
      rc=1
    fi
  done
  return $rc
}

print_rss() {
  local svc pid total=0 rss
  for svc in "${SERVICES[@]}"; do
    if pid="$(pid_alive "$(svc_pidfile "$svc")")"; then
      rss="$(ps -o rss= -p "$pid" | tr -d ' ')"
      total=$((total + rss))
      log "$(printf '%-9s pid %-7s RSS %5d MiB' "$svc" "$pid" $((rss / 1024)))"
    fi
  done
  log "$(printf 'total                  RSS %5d MiB' $((total / 1024)))"
}

case "${1:-}" in
  fetch)
    for svc in "${SERVICES[@]}"; do "$SERVICES_DIR/$svc.sh" fetch; done
    ;;
  start)
    t0="$(now_ms)"
    for svc in "${SERVICES[@]}"; do "$SERVICES_DIR/$svc.sh" fetch; done
    run_parallel start
    log "all started in $(( ($(now_ms) - t0) / 1000 ))s"
    print_rss
    ;;
  stop) run_parallel stop ;;
  wait) run_parallel wait ;;
  status)
    rc=0
    for svc in "${SERVICES[@]}"; do "$SERVICES_DIR/$svc.sh" status || rc=1; done
    [ $rc -ne 0 ] || print_rss
    exit $rc
    ;;
  *) printf 'usage: %s start|stop|status|wait|fetch\n' "$0" >&2; exit 2 ;;
esac
