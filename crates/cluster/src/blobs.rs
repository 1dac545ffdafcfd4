//! The blob interface both back ends implement, and [`DirBlobs`], the embedded store's own blob directory
//! (`ab/cdef…` by BLAKE3 hex; temp file, `fsync`, rename) behind the same interface.

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use huren_model::ContentHash;

/// Why a blob operation failed. Every variant names the blob's key (object key or file path).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// What was read under the key does not hash to the key: damaged or foreign bytes.
    #[error("blob {key}: content does not match its hash (read {len} bytes hashing to {actual})")]
    Corrupt {
        /// The object key or file path.
        key: String,
        /// The hash of the bytes read.
        actual: ContentHash,
        /// How many bytes were read.
        len: usize,
    },
    /// `put` was given bytes that are not the hash's.
    #[error("blob {key}: the bytes to store hash to {actual}, not to the key")]
    WrongBytes {
        /// The object key or file path.
        key: String,
        /// The hash of the bytes given.
        actual: ContentHash,
    },
    /// An object is already stored under the key but has another length: not this blob.
    #[error("blob {key}: an object of {found} bytes is stored under the key, expected {expected}")]
    Conflict {
        /// The object key.
        key: String,
        /// The stored object's length.
        found: u64,
        /// The length of the bytes to store.
        expected: u64,
    },
    /// The object store answered an error.
    #[error("blob {key}: object store: {source}")]
    Store {
        /// The object key.
        key: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// A file operation failed.
    #[error("blob {key}: {}: {source}", path.display())]
    Io {
        /// The blob's hash (`blake3:…`).
        key: String,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The blocking task doing the file I/O failed (panicked or was cancelled).
    #[error("blob {key}: blocking task failed: {source}")]
    Task {
        /// The blob's hash.
        key: String,
        /// tokio's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// A content-addressed blob store: the key is the BLAKE3 hash of the bytes.
///
/// `put` is create-only and idempotent: a blob already stored counts as stored. `get` checks
/// the bytes against the hash and answers [`BlobError::Corrupt`] when they differ, so a
/// damaged object is an error, never a wrong answer.
pub trait BlobBackend: Send + Sync {
    /// Stores `bytes` under `hash` (which must be their hash: checked) unless it is stored;
    /// says which.
    fn put(
        &self,
        hash: ContentHash,
        bytes: Bytes,
    ) -> impl Future<Output = Result<Put, BlobError>> + Send;
    /// Stores the file at `path` (its bytes must hash to `hash`: checked) unless it is
    /// stored; says which. By default the file is read whole and [`BlobBackend::put`];
    /// [`crate::S3Blobs`] streams a large one (a multipart upload), never holding it whole.
    fn put_file(
        &self,
        hash: ContentHash,
        path: std::path::PathBuf,
    ) -> impl Future<Output = Result<Put, BlobError>> + Send {
        async move {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|source| BlobError::Io {
                    key: hash.to_string(),
                    path: path.clone(),
                    source,
                })?;
            self.put(hash, Bytes::from(bytes)).await
        }
    }
    /// The blob's bytes, checked against `hash`; `None` when nothing is stored under it.
    fn get(
        &self,
        hash: ContentHash,
    ) -> impl Future<Output = Result<Option<Bytes>, BlobError>> + Send;
    /// Whether something is stored under `hash` (not read, so not checked).
    fn exists(&self, hash: ContentHash) -> impl Future<Output = Result<bool, BlobError>> + Send;
    /// Removes the blob; removing a missing blob is not an error (the orphan sweeper's tool).
    fn delete(&self, hash: ContentHash) -> impl Future<Output = Result<(), BlobError>> + Send;
    /// Every blob last written before `cutoff` (the orphan sweeper's candidates); objects
    /// whose names are not blob keys are left out.
    fn list_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Vec<ContentHash>, BlobError>> + Send;
}

/// What a `put` did. A blob that [`Put::Existed`] and that no committed row names may be an
/// orphan the sweeper is about to remove: the commit checks it again under the sweep lock
/// (see [`crate::sweep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Written now.
    Created,
    /// Something with the same key and length was there already.
    Existed,
}

/// The object key of a blob: `blobs/ab/cd/<64 hex digits>`.
pub fn blob_key(hash: &ContentHash) -> String {
    let hex = hash.hex();
    format!("blobs/{}/{}/{hex}", &hex[..2], &hex[2..4])
}

/// Checks `bytes` against `hash`.
pub(crate) fn check(key: &str, hash: &ContentHash, bytes: &[u8]) -> Result<(), BlobError> {
    let actual = ContentHash::of(bytes);
    if actual == *hash {
        Ok(())
    } else {
        Err(BlobError::Corrupt {
            key: key.to_string(),
            actual,
            len: bytes.len(),
        })
    }
}

/// Checks that `bytes` given to `put` are the hash's.
pub(crate) fn check_put(key: &str, hash: &ContentHash, bytes: &[u8]) -> Result<(), BlobError> {
    let actual = ContentHash::of(bytes);
    if actual == *hash {
        Ok(())
    } else {
        Err(BlobError::WrongBytes {
            key: key.to_string(),
            actual,
        })
    }
}

/// Blobs as files in a directory: the embedded store's own blob directory
/// ([`huren_store::BlobDir`], `objects/`'s layout and write path — temp file, `fsync`, rename,
/// directory `fsync`), with the [`BlobBackend`] semantics on top (the bytes checked against
/// the key before a write, every read verified). File I/O runs on tokio's blocking pool.
#[derive(Clone)]
pub struct DirBlobs {
    dir: huren_store::BlobDir,
}

impl std::fmt::Debug for DirBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirBlobs").finish_non_exhaustive()
    }
}

fn store_err(key: &str, path: &Path, e: huren_store::StoreError) -> BlobError {
    let source = match e {
        huren_store::StoreError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    };
    io_err(key, path, source)
}

impl DirBlobs {
    /// Opens (creates) the directory and its `tmp/`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let dir = huren_store::BlobDir::open(root.clone())
            .map_err(|e| store_err("(directory)", &root, e))?;
        Ok(DirBlobs { dir })
    }

    /// The file of a blob.
    pub fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.path(hash)
    }

    fn put_sync(&self, hash: &ContentHash, bytes: &[u8]) -> Result<Put, BlobError> {
        let key = hash.to_string();
        check_put(&key, hash, bytes)?;
        if self.path(hash).is_file() {
            return Ok(Put::Existed);
        }
        self.dir
            .write_synced(hash, bytes)
            .map_err(|e| store_err(&key, &self.path(hash), e))?;
        Ok(Put::Created)
    }

    fn get_sync(&self, hash: &ContentHash) -> Result<Option<Bytes>, BlobError> {
        let p = self.path(hash);
        match self.dir.read_file(hash) {
            Ok(Some(b)) => {
                check(&format!("{hash} at {}", p.display()), hash, &b)?;
                Ok(Some(Bytes::from(b)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(store_err(&hash.to_string(), &p, e)),
        }
    }

    fn delete_sync(&self, hash: &ContentHash) -> Result<(), BlobError> {
        let p = self.path(hash);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&hash.to_string(), &p, e)),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        hash: ContentHash,
        f: impl FnOnce(&DirBlobs, &ContentHash) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this, &hash))
            .await
            .map_err(|source| BlobError::Task {
                key: hash.to_string(),
                source,
            })?
    }
}

impl BlobBackend for DirBlobs {
    async fn put(&self, hash: ContentHash, bytes: Bytes) -> Result<Put, BlobError> {
        self.blocking(hash, move |d, h| d.put_sync(h, &bytes)).await
    }

    async fn get(&self, hash: ContentHash) -> Result<Option<Bytes>, BlobError> {
        self.blocking(hash, |d, h| d.get_sync(h)).await
    }

    async fn exists(&self, hash: ContentHash) -> Result<bool, BlobError> {
        self.blocking(hash, |d, h| Ok(d.path(h).is_file())).await
    }

    async fn delete(&self, hash: ContentHash) -> Result<(), BlobError> {
        self.blocking(hash, |d, h| d.delete_sync(h)).await
    }

    async fn list_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ContentHash>, BlobError> {
        let root = self.dir.path(&ContentHash::of(b""));
        let root = root
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let cutoff: std::time::SystemTime = cutoff.into();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let Ok(top) = fs::read_dir(&root) else {
                return Ok(out);
            };
            // `<root>/<2 hex>/<62 hex>`; `tmp/` and anything else is not a blob.
            for d in top.flatten().filter(|d| d.file_name().len() == 2) {
                let prefix = d.file_name().to_string_lossy().to_string();
                let Ok(files) = fs::read_dir(d.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = format!("{prefix}{}", f.file_name().to_string_lossy());
                    let old = f
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t < cutoff);
                    if let (true, Ok(h)) = (old, format!("blake3:{name}").parse::<ContentHash>()) {
                        out.push(h);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|source| BlobError::Task {
            key: "(listing)".into(),
            source,
        })?
    }
}

fn io_err(key: &str, path: &Path, source: io::Error) -> BlobError {
    BlobError::Io {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    }
}
