//! End-to-end test package: see `e2e/`.
