//! End-to-end tests: the real `flotilla` binary, real sockets on loopback, real SQLite files in
//! temp dirs. One test binary; one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_api;
mod cli;
mod cli_engine;
mod cli_firmware;
mod cli_inventory;
mod data_safety;
mod device_identity;
mod device_profiles;
mod device_server;
mod discovery;
mod firmware_client;
mod firmware_forms;
mod firmware_verdicts;
mod fleet;
mod full_disk;
mod limits;
mod mdns;
mod native_pull;
mod probe;
mod rollout;
mod rollout_views;
mod secrets;
mod serve;
mod sim_discovery;
mod steering;
mod support;
mod tls;
mod web_ui;
