#!/usr/bin/env bash
# The proxy's overhead at fixed rates, side by side with the upstream alone (benches/proxy_overhead.rs),
# and what routing adds on top of pass-through, MiniLM and static encoders (benches/routing_overhead.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench proxy_overhead
exec cargo bench --bench routing_overhead
