#!/usr/bin/env bash
# Installs what the tests need, typechecks and lints every package and runs every test.
# Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
install_dependencies
ensure_test_browser
# kustomize and kubernetes-validate for the offline checks of deploy/ (cached after the first run)
bash "$CHATIFY_ROOT/deploy/tools.sh" install
cd "$CHATIFY_ROOT"
log "typechecking"
"${PNPM[@]}" run --silent typecheck
log "linting (typescript-eslint strict type-checked rules and dprint formatting)"
"${PNPM[@]}" run --silent lint
# Integration tests start the real services they need (scripts/services/, idempotent); stop the
# ones this run started, and leave alone what a developer had running before.
running_before=()
for service in redis kafka cassandra opensearch jaeger; do
  if bash "$CHATIFY_ROOT/scripts/services/$service.sh" status >/dev/null 2>&1; then running_before+=("$service"); fi
done
# shellcheck disable=SC2317  # false positive: only called by the EXIT trap, which shellcheck 0.9 does not follow
stop_started_services() {
  for service in redis kafka cassandra opensearch jaeger; do
    if [[ " ${running_before[*]-} " != *" $service "* ]]; then
      bash "$CHATIFY_ROOT/scripts/services/$service.sh" stop >/dev/null 2>&1 || true
    fi
  done
}
trap stop_started_services EXIT

# The Flink job's tests (Maven + JUnit 5, a MiniCluster against the real Kafka): in a full run only,
# not when vitest is given a filter; first, so that vitest's summary stays the last line.
analytics_status=0
if [ $# -eq 0 ]; then
  log "analytics tests (the Flink job: scripts/analytics.sh test)"
  bash "$CHATIFY_ROOT/scripts/analytics.sh" test || analytics_status=$?
fi
# the jar that packages/server/test/analytics-e2e.test.ts runs (scripts/analytics.sh run): built only
# when its sources changed since the last build (the test builds it too when run on its own)
log "analytics job jar (built when its sources changed)"
bash "$CHATIFY_ROOT/scripts/analytics.sh" jar || analytics_status=$?

# Jaeger, for the traces test (packages/server/test/tracing-jaeger.test.ts), is built from its Go
# module the first time (a few CPU-minutes, cached in $CHATIFY_CACHE): here rather than in that
# file's beforeAll, where the build would eat its timeout while other files run beside it.
log "building Jaeger for the traces test (scripts/services/jaeger.sh fetch; cached after the first run)"
bash "$CHATIFY_ROOT/scripts/services/jaeger.sh" fetch

log "running the tests"
mkdir -p "$CHATIFY_CACHE"
report="$CHATIFY_CACHE/vitest-report.json"
rm -f "$report"
status=0
"${PNPM[@]}" exec vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
if [ -f "$report" ]; then
  # no JS template literal here: shellcheck would take its ${…} for shell expansions (SC2016)
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(r.numPassedTests + " passed, " + r.numFailedTests + " failed, " +
      (r.numPendingTests + r.numTodoTests) + " skipped");
  ' "$report"
fi
[ "$analytics_status" -eq 0 ] || [ "$status" -ne 0 ] || status="$analytics_status"

# the fault bench's short profile (kafka-kill, pod-kill, broker-net; about 4 minutes): it exits
# non-zero when an acknowledged message is lost. The full profile is `pnpm bench:faults`.
if [ $# -eq 0 ]; then
  log "fault injection, short profile (FAULTS_PROFILE=short pnpm bench:faults)"
  faults_status=0
  FAULTS_PROFILE=short "${PNPM[@]}" run --silent bench:faults || faults_status=$?
  [ "$faults_status" -eq 0 ] || [ "$status" -ne 0 ] || status="$faults_status"
fi
exit "$status"
