use std::path::Path;

use huren_model::ContentHash;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sled index failed.
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    /// A sled transaction failed.
    #[error("index transaction: {0}")]
    Transaction(String),
    /// Stored data does not decode or does not match its hash.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A blob the index names is missing.
    #[error("missing blob {0}")]
    MissingBlob(ContentHash),
    /// A report could not be serialised canonically.
    #[error("report cannot be serialised: {0}")]
    Canonical(#[from] huren_model::CanonicalError),
    /// A report does not refer to the original it came with.
    #[error("report names original {report} but the ingest's original is {original}")]
    OriginalMismatch {
        /// What the report says.
        report: ContentHash,
        /// What was supplied.
        original: ContentHash,
    },
    /// The group commit that held this ingest failed; nothing of it was recorded.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The writer thread has stopped (after an unrecoverable journal error).
    #[error("store writer has stopped; no further commits are possible")]
    WriterGone,
    /// No identity review item has this id.
    #[error("no identity review item {0}")]
    ReviewNotFound(String),
    /// The identity review item was already decided.
    #[error("identity review item {0} is already resolved")]
    ReviewClosed(String),
    /// A previous journal write failed and could not be rolled back.
    #[error("store is read-only after a journal failure: {0}")]
    Poisoned(String),
    /// The cluster's shared tables failed (PostgreSQL); nothing was recorded.
    #[error("shared store: {0}")]
    Shared(String),
}

impl StoreError {
    /// A file-system failure at `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
