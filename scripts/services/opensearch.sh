#!/usr/bin/env bash
# OpenSearch for the log sink's tests and local runs: one node on 127.0.0.1, embedded in a small Java
# launcher over the Maven Central modules (no tarball download, no Docker here). It speaks the
# Elasticsearch REST API the sink uses (_bulk, _index_template, _search).
#   scripts/services/opensearch.sh start|stop|status|wait|fetch
#     fetch   only download the jars and compile the launcher, start nothing
#   start, stop and fetch hold $CHATIFY_CACHE/locks/opensearch.lock: a concurrent start waits, then
#   finds the node running, so two starts at once never leave a second, untracked JVM.
# Env: CHATIFY_OPENSEARCH_PORT (9200, HTTP), CHATIFY_OPENSEARCH_TRANSPORT_PORT (9300),
#      CHATIFY_OPENSEARCH_WAIT_TIMEOUT (90 s), CHATIFY_OPENSEARCH_VERSION (2.19.6),
#      CHATIFY_OPENSEARCH_HEAP (512m), CHATIFY_OPENSEARCH_STOP_TIMEOUT (30 s), CHATIFY_JAVA (a Java 17;
#      default `java`, else a JDK 17 under /usr/lib/jvm), CHATIFY_CACHE.
set -euo pipefail
SERVICE=opensearch
source "$(dirname "$0")/lib.sh"

# 2.19.x: the last line that runs on Java 17 (3.x needs 21) and whose Node takes plugin classes.
VERSION="${CHATIFY_OPENSEARCH_VERSION:-2.19.6}"
PORT="${CHATIFY_OPENSEARCH_PORT:-9200}"
TRANSPORT_PORT="${CHATIFY_OPENSEARCH_TRANSPORT_PORT:-9300}"
WAIT_TIMEOUT="${CHATIFY_OPENSEARCH_WAIT_TIMEOUT:-90}"
HEAP="${CHATIFY_OPENSEARCH_HEAP:-512m}"

PIDFILE="$(svc_pidfile "$SERVICE")"
LOGFILE="$(svc_logfile "$SERVICE")"
LIB="$CACHE/lib/opensearch-$VERSION"
LAUNCHER_DIR="$CACHE/lib/opensearch-launcher-$VERSION"
HOME_DIR="$CACHE/conf/opensearch"
# one data dir per version: indices written by a newer version cannot be read by an older one
DATA="$CACHE/data/opensearch-$VERSION"
MARKER="ChatifyOpenSearch"  # our launcher's main class; a reused pid will not name it
export WAIT_LOG="$LOGFILE" WAIT_PIDFILE="$PIDFILE"

# The launcher: Node's constructor that takes plugin classes is protected, hence the subclass.
# Netty4Plugin brings the HTTP layer (without it there is no REST API at all).
LAUNCHER_SOURCE='import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

/** One OpenSearch node on loopback: args are home, data, logs, HTTP port, transport port. */
public final class ChatifyOpenSearch {
  private static final class EmbeddedNode extends Node {
    EmbeddedNode(Environment environment) {
      super(environment, List.of(Netty4Plugin.class), true);
    }
  }

  public static void main(String[] args) throws Exception {
    Settings settings = Settings.builder()
        .put("path.home", args[0])
        .put("path.data", args[1])
        .put("path.logs", args[2])
        .put("http.port", args[3])
        .put("transport.port", args[4])
        .put("cluster.name", "chatify")
        .put("node.name", "chatify-1")
        .put("discovery.type", "single-node")
        .put("network.host", "127.0.0.1")
        // a nearly full disk must not turn every index read-only on a developer machine
        .put("cluster.routing.allocation.disk.threshold_enabled", false)
        .build();
    LogConfigurator.configureWithoutConfig(settings);
    Environment environment =
        InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), Path.of(args[0], "config"), () -> "chatify-1");
    Node node = new EmbeddedNode(environment);
    CountDownLatch closed = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        node.close();
        node.awaitClose(20, TimeUnit.SECONDS);
      } catch (Exception e) {
        e.printStackTrace();
      }
      closed.countDown();
    }));
    node.start();
    closed.await();
  }
}
'

ensure_jars() {
  # log4j-core matches the log4j-api that opensearch depends on (2.25.4 for 2.19.6)
  fetch_maven_jars "opensearch-$VERSION" "org.opensearch:opensearch:$VERSION" \
    "org.opensearch.plugin:transport-netty4-client:$VERSION" "org.apache.logging.log4j:log4j-core:2.25.4"
  ensure_launcher
}

# ensure_launcher: compiles the launcher once per source text (a hash marker), into the cache.
ensure_launcher() {
  local hash
  hash="$(printf '%s' "$LAUNCHER_SOURCE" | sha256sum | cut -c1-16)"
  [ -f "$LAUNCHER_DIR/.source-$hash" ] && return 0
  pick_java
  local javac="${JAVA%/java}/javac"
  [ -x "$javac" ] || javac="javac"
  command -v "$javac" >/dev/null 2>&1 || die "javac (a JDK 17) is required to compile the launcher"
  rm -rf "$LAUNCHER_DIR.new"
  mkdir -p "$LAUNCHER_DIR.new"
  printf '%s' "$LAUNCHER_SOURCE" >"$LAUNCHER_DIR.new/ChatifyOpenSearch.java"
  "$javac" -nowarn -cp "$LIB/*" -d "$LAUNCHER_DIR.new" "$LAUNCHER_DIR.new/ChatifyOpenSearch.java" ||
    die "could not compile the OpenSearch launcher"
  touch "$LAUNCHER_DIR.new/.source-$hash"
  rm -rf "$LAUNCHER_DIR"
  mv "$LAUNCHER_DIR.new" "$LAUNCHER_DIR"
}

# pick_java: OpenSearch 2.19 runs on Java 11 to 21; prefer the default java when it is one of those,
# else an installed JDK 17.
pick_java() {
  local j major
  j="$(java_bin)"
  major="$(java_major "$j")"
  case "$major" in 11 | 17 | 21) JAVA="$j"; return ;; esac
  if [ -z "${CHATIFY_JAVA:-}" ]; then
    for j in /usr/lib/jvm/*17*/bin/java /usr/lib/jvm/*-17-*/bin/java; do
      if [ -x "$j" ] && [ "$(java_major "$j")" = 17 ]; then
        log "default java is ${major:-unknown}; using $j (OpenSearch 2.19 needs Java 11 to 21)"
        JAVA="$j"
        return
      fi
    done
  fi
  die "OpenSearch 2.19 needs Java 11 to 21, $j is Java ${major:-unknown}; set CHATIFY_JAVA to a JDK 17 java"
}

# cluster_ready: the REST API answers and the cluster is at least yellow (one node: replicas of the
# sink's indices can never be assigned, yellow is as good as it gets).
cluster_ready() {
  curl -fsS --max-time 3 "http://127.0.0.1:$PORT/_cluster/health?wait_for_status=yellow&timeout=2s" |
    grep -Eq '"status":"(yellow|green)"'
}

cmd_start() {
  local pid t0
  if pid="$(pid_alive "$PIDFILE" "$MARKER")"; then
    log "already running (pid $pid, HTTP on 127.0.0.1:$PORT)"
    return 0
  fi
  clear_stale_pidfile "$PIDFILE" "$MARKER"
  t0="$(now_ms)"
  command -v curl >/dev/null 2>&1 || ensure_apt curl
  ensure_jars
  local p
  for p in "$PORT" "$TRANSPORT_PORT"; do
    port_in_use "$p" && die "port $p on 127.0.0.1 is taken by another process; set CHATIFY_OPENSEARCH_PORT / CHATIFY_OPENSEARCH_TRANSPORT_PORT"
  done
  pick_java
  mkdir -p "$HOME_DIR/config" "$HOME_DIR/plugins" "$HOME_DIR/modules" "$DATA" "$CACHE/logs/opensearch"
  log "starting OpenSearch $VERSION on 127.0.0.1 (HTTP $PORT, transport $TRANSPORT_PORT, heap $HEAP, Java $(java_major "$JAVA"); log $LOGFILE)"
  local t1
  t1="$(now_ms)"
  # -Xms below -Xmx: the heap grows only if the tests need it. No AlwaysPreTouch, no heap dumps.
  spawn_daemon "$PIDFILE" "$LOGFILE" "$JAVA" "-Xms256m" "-Xmx$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -Dlog4j2.disable.jmx=true -Dlog4j.shutdownHookEnabled=false \
    -Dio.netty.allocator.numDirectArenas=0 -Dopensearch.networkaddress.cache.ttl=60 \
    -cp "$LAUNCHER_DIR:$LIB/*" ChatifyOpenSearch \
    "$HOME_DIR" "$DATA" "$CACHE/logs/opensearch" "$PORT" "$TRANSPORT_PORT"
  wait_for "opensearch on 127.0.0.1:$PORT (cluster health)" "$WAIT_TIMEOUT" cluster_ready
  log "ready: answered $(( ($(now_ms) - t1) / 1000 ))s after the JVM started, $(( ($(now_ms) - t0) / 1000 ))s in all (pid $(cat "$PIDFILE"))"
}

cmd_wait() {
  require_running "$PIDFILE" "$MARKER"
  wait_for "opensearch on 127.0.0.1:$PORT (cluster health)" "$WAIT_TIMEOUT" cluster_ready
}

cmd_status() {
  local pid
  if pid="$(pid_alive "$PIDFILE" "$MARKER")"; then
    if cluster_ready; then
      log "running (pid $pid, HTTP on 127.0.0.1:$PORT answers)"
    else
      log "running (pid $pid), HTTP on 127.0.0.1:$PORT not answering yet"
    fi
    return 0
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  # start, stop and fetch hold the service lock (svc_lock in lib.sh) until the script exits
  start) svc_lock; cmd_start ;;
  stop) svc_lock; stop_pidfile "$PIDFILE" "${CHATIFY_OPENSEARCH_STOP_TIMEOUT:-30}" "$MARKER" ;;
  status) cmd_status ;;
  wait) cmd_wait ;;
  fetch) svc_lock; ensure_jars ;;
  *) usage_main "$0" ;;
esac
