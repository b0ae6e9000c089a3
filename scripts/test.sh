#!/usr/bin/env bash
# Sets up what the tests need and runs all of them: formatting, lints, unit, integration and
# end-to-end tests. Exit code 0 only if everything passed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_rust
ensure_packages pkg-config build-essential ca-certificates mosquitto iproute2 mount util-linux
cd "$ROOT"

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

say "cargo test (unit, integration, end-to-end; benchmarks run once as tests)"
cargo test --locked --workspace --all-targets

say "all tests passed"
