#!/usr/bin/env bash
# Runs the relay benchmark (direwolf-core/benches/relay.rs): installs its baselines (socat,
# nftables) with apt-get first. Needs root (network namespaces). Not part of CI.
#
# The benchmark runs on CPU 0 (it pins the forwarders to CPU 1 itself). DW_BENCH_ISOLATE=1 also
# moves every other task that may move off CPU 1 for the run and restores their CPU sets after.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v socat >/dev/null || ! command -v nft >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y socat nftables
fi
# Build first, on every core.
cargo bench -p direwolf-core --bench relay --no-run
declare -A saved=()
restore() {
  for pid in "${!saved[@]}"; do
    taskset -p -c "${saved[$pid]}" "$pid" >/dev/null 2>&1 || true
  done
}
if [ "${DW_BENCH_ISOLATE:-0}" = 1 ]; then
  trap restore EXIT
  for pid in $(ps -eo pid=); do
    cpus=$(taskset -p -c "$pid" 2>/dev/null | sed 's/.*: //') || continue
    [ -n "$cpus" ] || continue
    if taskset -p -c 0 "$pid" >/dev/null 2>&1; then
      saved[$pid]=$cpus
    fi
  done
  echo "relay.sh: moved ${#saved[@]} tasks to CPU 0 for the run" >&2
fi
taskset -c 0 cargo bench -p direwolf-core --bench relay "$@"
