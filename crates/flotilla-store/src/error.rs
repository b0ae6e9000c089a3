//! The store's error type.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A file of the database could not be created or made private.
    #[error("cannot prepare database file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    /// A row holds something this version cannot read (a JSON column from a newer schema, say).
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
}

impl StoreError {
    /// SQLite could not grow the database: the disk (or its quota) is full.
    pub fn is_disk_full(&self) -> bool {
        let sqlite = match self {
            StoreError::Sqlite(e) | StoreError::Open { source: e, .. } => e,
            StoreError::Migration(rusqlite_migration::Error::RusqliteError { err, .. }) => err,
            StoreError::Io { source, .. } => return source.kind() == std::io::ErrorKind::StorageFull,
            _ => return false,
        };
        matches!(sqlite.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
