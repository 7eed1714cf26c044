#!/usr/bin/env bash
# The Flink analytics job (packages/analytics, com.chatify.flink.ChatEventProcessorJob).
#   scripts/analytics.sh build         build the shaded jar packages/analytics/target/chatify-flink-jobs.jar
#                                      (what a Flink cluster runs) and the class path of a local run
#   scripts/analytics.sh jar           build only when the sources changed since the last build (what
#                                      `run` does first; the end-to-end test calls it before it runs the job)
#   scripts/analytics.sh run [ARGS]    run the job on a local Flink MiniCluster in this JVM, against the
#                                      Kafka of CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS (default
#                                      127.0.0.1:9092, e.g. scripts/services/kafka.sh start); builds first
#                                      when the sources changed. ARGS are job arguments (--window 10s ...)
#   scripts/analytics.sh test          the job's tests (mvn test: JUnit 5, a MiniCluster and the real
#                                      Kafka, which the tests start with scripts/services/kafka.sh)
# Env: CHATIFY_ANALYTICS_HEAP (768m) for run; CHATIFY_MAVEN_REPO: another local Maven repository;
#      the job's own settings (README, "Analytics"). `run` creates missing output topics unless
#      CHATIFY__MESSAGEBROKER__CREATETOPICS=false.
set -euo pipefail
SERVICE=analytics
source "$(dirname "$0")/services/lib.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROJECT="$ROOT/packages/analytics"
JAR="$PROJECT/target/chatify-flink-jobs.jar"
CLASSPATH_FILE="$PROJECT/target/run-classpath.txt"

# Flink's own JVM options for Java 17 (env.java.default-opts.all): it reflects into these modules.
FLINK_JAVA_OPTS=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

# ensure_tools: Maven and a JDK 17+ (Debian packages when missing; the job is built for Java 17).
ensure_tools() {
  command -v mvn >/dev/null 2>&1 || ensure_apt maven
  command -v javac >/dev/null 2>&1 || ensure_apt openjdk-17-jdk-headless
  local major
  major="$(java_major "$(java_bin)")"
  [ "${major:-0}" -ge 17 ] || die "Java 17 or newer is required (found ${major:-none}; set CHATIFY_JAVA)"
}

mvn_in_project() {
  local opts=(-B -q -f "$PROJECT/pom.xml")
  [ -z "${CHATIFY_MAVEN_REPO:-}" ] || opts+=("-Dmaven.repo.local=$CHATIFY_MAVEN_REPO")
  mvn "${opts[@]}" "$@"
}

cmd_build() {
  ensure_tools
  local t0
  t0="$(now_ms)"
  log "building $JAR"
  mvn_in_project -DskipTests package
  # Flink itself is `provided` (a cluster has it); a local run needs it on the class path
  mvn_in_project dependency:build-classpath -Dmdep.includeScope=compile -Dmdep.outputFile="$CLASSPATH_FILE"
  log "built in $(( ($(now_ms) - t0) / 1000 ))s: $JAR ($(du -h "$JAR" | cut -f1))"
}

# up_to_date: the jar and the class path exist and nothing under src/ or the pom is newer.
up_to_date() {
  [ -f "$JAR" ] && [ -f "$CLASSPATH_FILE" ] || return 1
  [ -z "$(find "$PROJECT/src/main" "$PROJECT/pom.xml" -newer "$JAR" -print -quit)" ]
}

cmd_run() {
  up_to_date || cmd_build
  export CHATIFY__MESSAGEBROKER__CREATETOPICS="${CHATIFY__MESSAGEBROKER__CREATETOPICS:-true}"
  log "running com.chatify.flink.ChatEventProcessorJob on a local MiniCluster against" \
    "${CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS:-127.0.0.1:9092} (Ctrl-C stops it)"
  exec "$(java_bin)" "-Xmx${CHATIFY_ANALYTICS_HEAP:-768m}" "${FLINK_JAVA_OPTS[@]}" \
    "-Dlog4j.configurationFile=$PROJECT/log4j2-local.properties" \
    -cp "$JAR:$(cat "$CLASSPATH_FILE")" com.chatify.flink.ChatEventProcessorJob "$@"
}

cmd_test() {
  ensure_tools
  local t0
  t0="$(now_ms)"
  mvn_in_project test
  local reports="$PROJECT/target/surefire-reports"
  local count
  # the first tests="N" of each report is its <testsuite>'s
  count="$(for report in "$reports"/TEST-*.xml; do grep -o 'tests="[0-9]*"' "$report" | head -n 1; done |
    tr -dc '0-9\n' | awk '{ n += $1 } END { print n + 0 }')"
  log "$count tests passed in $(( ($(now_ms) - t0) / 1000 ))s (reports in $reports)"
}

case "${1:-}" in
  build) cmd_build ;;
  jar) up_to_date || cmd_build ;;
  run) shift; cmd_run "$@" ;;
  test) cmd_test ;;
  *) printf 'usage: %s build|jar|run [job arguments]|test\n' "$0" >&2; exit 2 ;;
esac
