//! Staged rollouts.
//!
//! - [`target`]: target expressions (`label:X and outdated`).
//! - [`plan`]: compatibility checks, waves by consistent hashing, thresholds and gates.
//! - [`window`]: maintenance windows.
//! - [`run`]: one rollout in memory — the job state machine, gates, admission, timeouts. Every
//!   decision produces store writes ([`crate::writer::Op`]) that the engine queues; a command is
//!   only sent after its write is durable.
//!
//! Nothing here does I/O: the engine's scheduler task ([`crate::engine`] via [`crate::handle`]) locks the fleet, calls
//! these functions, then writes and sends what they decided.

pub mod plan;
pub mod report;
pub mod run;
pub mod target;
pub mod window;
