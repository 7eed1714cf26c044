#!/usr/bin/env bash
# The full fuzz and crash run (pnpm bench:fuzz): 100,000 cases per interface against a running
# server and 20 SIGKILLs of the embedded server during sends, with the figures printed.
#   FUZZ_RUNS     cases per interface (default 100000; the normal suite runs 10000)
#   CRASH_ROUNDS  SIGKILL rounds (default 20)
#   FUZZ_SEED     replays a run: every test prints the seed it used
set -euo pipefail
cd "$(dirname "$0")/../.."
export FUZZ_RUNS="${FUZZ_RUNS:-100000}"
export CRASH_ROUNDS="${CRASH_ROUNDS:-20}"
echo "[fuzz] $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Node $(node --version)"
exec pnpm exec vitest run packages/server/test/fuzz-interfaces.test.ts packages/server/test/crash-consistency.test.ts
