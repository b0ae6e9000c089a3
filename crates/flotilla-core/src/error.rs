//! The engine's error type: one variant per cause a caller can act on.

use crate::firmware::image::ImageError;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The file is not a firmware image that can work (the parser's reason, naming offset or field).
    #[error("{0}")]
    InvalidImage(#[from] ImageError),
    /// The image parsed but breaks a rule of the site (size, version, duplicate version…).
    #[error("{0}")]
    Refused(String),
    /// The request itself is malformed (bad id, bad label, bad JSON field).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with what is stored (in use, already exists with other bytes).
    #[error("{0}")]
    Conflict(String),
    /// A file or socket operation failed; `context` says which and where.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(flotilla_store::StoreError),
    /// This engine cannot do that (a feature it was started without).
    #[error("{0}")]
    Unavailable(String),
    /// A device request without the credential its device must show (or with a wrong one).
    #[error("{0}")]
    Unauthenticated(String),
    /// The engine is shutting down or a worker it needs has stopped.
    #[error("engine is shutting down")]
    ShuttingDown,
}

impl CoreError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CoreError {
        CoreError::Io { context: context.into(), source }
    }

    /// The disk is full: the change is not saved (the admin API's `507 Insufficient Storage`).
    pub fn disk_full() -> CoreError {
        CoreError::io(
            "the disk is full: changes are not being saved (they are kept and saved once space is freed)",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        )
    }

    /// True when the cause is a full disk (ENOSPC, SQLITE_FULL): answered `507 Insufficient Storage`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            CoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            CoreError::Store(s) => s.is_disk_full(),
            _ => false,
        }
    }

    /// Stable machine-readable code (the admin API's `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidImage(_) => "invalid_image",
            CoreError::Refused(_) => "refused",
            CoreError::BadRequest(_) => "bad_request",
            CoreError::NotFound(_) => "not_found",
            CoreError::Conflict(_) => "conflict",
            CoreError::Io { .. } => "io_error",
            CoreError::Store(_) => "store_error",
            CoreError::Unavailable(_) => "unavailable",
            CoreError::Unauthenticated(_) => "unauthorized",
            CoreError::ShuttingDown => "shutting_down",
        }
    }
}

impl From<flotilla_store::StoreError> for CoreError {
    fn from(e: flotilla_store::StoreError) -> CoreError {
        use flotilla_store::StoreError as S;
        match e {
            S::NotFound { what } => CoreError::NotFound(what),
            S::Conflict(msg) => CoreError::Conflict(msg),
            other => CoreError::Store(other),
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
