# shellcheck shell=bash
# Shared by scripts/{up,down,status,logs-chatify,port-forward}.sh: the cluster's names, the images,
# and the check that the tools a script needs are installed, done before the script changes anything.
# Sourced, not executed.

# shellcheck disable=SC2034  # read by the scripts that source this file
CHATIFY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND_CLUSTER="${CHATIFY_KIND_CLUSTER:-chatify}"
# every kubectl call names its context: never the cluster that happens to be current
KUBE_CONTEXT="${CHATIFY_KUBE_CONTEXT:-kind-$KIND_CLUSTER}"
NAMESPACE=chatify
# the images scripts/up.sh builds and the manifests run (deploy-manifests.test.ts checks they agree)
# shellcheck disable=SC2034  # read by scripts/up.sh
CHAT_API_IMAGE="chatify/chat-api:0.1.0"
# shellcheck disable=SC2034  # read by scripts/up.sh
CHAT_API_DOCKERFILE="deploy/docker/chat-api.Dockerfile"
# shellcheck disable=SC2034  # read by scripts/up.sh
FLINK_JOBS_IMAGE="chatify/flink-jobs:1.0.0"
# shellcheck disable=SC2034  # read by scripts/up.sh
FLINK_JOBS_DOCKERFILE="deploy/docker/flink-jobs.Dockerfile"

log() { printf '[chatify] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

install_hint() {
  case "$1" in
    kind) echo "kind v0.29+: https://kind.sigs.k8s.io/docs/user/quick-start/#installation (or: go install sigs.k8s.io/kind@v0.31.0)" ;;
    kubectl) echo "kubectl v1.27+: https://kubernetes.io/docs/tasks/tools/" ;;
    docker) echo "Docker Engine or Docker Desktop: https://docs.docker.com/engine/install/" ;;
    *) echo "install it and put it on PATH" ;;
  esac
}

# require_tools TOOL...: stops at once, naming every missing tool and where to get it
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "missing: ${missing[*]} (nothing was changed). Install:"
  for tool in "${missing[@]}"; do log "  $tool: $(install_hint "$tool")"; done
  exit 1
}

# require_docker_daemon: kind runs its nodes as containers, so the daemon must answer
require_docker_daemon() {
  docker info >/dev/null 2>&1 ||
    die "docker is installed but its daemon does not answer ('docker info' failed): start Docker (nothing was changed)"
}

kind_cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"
}

# kctl ARGS...: kubectl on the Chatify namespace of the Chatify cluster
kctl() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$NAMESPACE" "$@"
}

# require_cluster: the context exists and its API server answers
require_cluster() {
  kubectl config get-contexts -o name 2>/dev/null | grep -qx "$KUBE_CONTEXT" ||
    die "no kubectl context $KUBE_CONTEXT: create the cluster with scripts/up.sh (or set CHATIFY_KUBE_CONTEXT)"
  kubectl --context "$KUBE_CONTEXT" get --raw /readyz >/dev/null 2>&1 ||
    die "the cluster of context $KUBE_CONTEXT does not answer: is it running? (kind get clusters; docker ps)"
}
