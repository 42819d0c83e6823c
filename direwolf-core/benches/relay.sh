#!/usr/bin/env bash
# Runs the relay benchmark (direwolf-core/benches/relay.rs): installs its baselines (socat,
# nftables) with apt-get first. Needs root (network namespaces). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v socat >/dev/null || ! command -v nft >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y socat nftables
fi
exec cargo bench -p direwolf-core --bench relay "$@"
