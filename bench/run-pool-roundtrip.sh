#!/usr/bin/env bash
# Builds and runs the pool round-trip micro benchmark (see bench/README.md).
# Arguments go to the binary, e.g.:  bench/run-pool-roundtrip.sh --seconds 2 --runs 1
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v php >/dev/null 2>&1; then
    echo "php not found; installing php-cli" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y php-cli
fi

cargo build --release -p courser-bench-pool
target="${CARGO_TARGET_DIR:-$root/target}"
exec "$target/release/pool-roundtrip" --root "$root" "$@"
