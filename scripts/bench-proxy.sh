#!/usr/bin/env bash
# The proxy's overhead at fixed rates, side by side with the upstream alone (benches/proxy_overhead.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench proxy_overhead
