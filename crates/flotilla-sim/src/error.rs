//! The simulator's error type: what can stop a fleet from starting, or an operation on it.

/// Why a fleet could not start, or an operation on a running fleet failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration cannot work (bad URL, bad count, missing broker for MQTT devices…).
    #[error("{0}")]
    Config(String),
    /// The engine could not be reached or answered something unusable (site key at start).
    #[error("{0}")]
    Engine(String),
    /// No device has this MAC or id.
    #[error("no simulated device has the MAC or id `{0}`")]
    NoSuchDevice(String),
    /// A socket could not be opened; `context` says which.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> SimError {
        SimError::Io { context: context.into(), source }
    }
}

/// Result with [`SimError`].
pub type Result<T, E = SimError> = std::result::Result<T, E>;
