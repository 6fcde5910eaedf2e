#!/usr/bin/env bash
# HTTP load on `dlinkwm serve` beside a plain axum handler doing the same serde work, measured
# with wrk in one run. Installs wrk from the distribution's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../../.."
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y wrk >/dev/null
    else
        sudo apt-get install -y wrk >/dev/null
    fi
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dlinkwm/target}"
cargo run --release -p dlinkwm-serve --example http_bench
