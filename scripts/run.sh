#!/usr/bin/env bash
# Sets up what Flotilla needs and launches it.
#   scripts/run.sh [flotilla serve options…]     e.g. --data-dir /tmp/site --no-mdns
# Until the desktop app lands this runs the headless engine (`flotilla serve`); the web UI and the
# simulated demo fleet (`--demo`) come with it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_rust
ensure_packages pkg-config build-essential ca-certificates
cd "$ROOT"
say "building flotilla (release)"
cargo build --release --locked -p flotilla-cli --bin flotilla
exec "$ROOT/target/release/flotilla" serve "$@"
