//! Originals too large to hold in memory while they arrive (a C-STORE data set of hundreds of
//! megabytes): written to a temporary file of the store as they are received, hashed on the
//! way, and made a durable blob file before the commit that names them. The commit then
//! carries only the hash ([`crate::Original::Stored`]); the bytes are never in memory whole.
//!
//! A crash before [`Spool::finish`] leaves a temporary file that the next start removes
//! (`objects/tmp` is emptied when the store opens); one between `finish` and the commit leaves
//! a blob file no record names: harmless (content-addressed), and kept.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use huren_model::{ContentHash, ContentHasher};

use crate::StoreError;

/// An original being received into a temporary file of the store.
pub struct Spool {
    dir: crate::blobs::BlobDir,
    path: PathBuf,
    file: Option<std::io::BufWriter<File>>,
    hasher: ContentHasher,
    len: u64,
}

/// A blob that [`Spool::finish`] made durable as a file of the store: the proof a commit
/// needs to name it without its bytes (fields private, so only a finished spool makes one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    hash: ContentHash,
    len: u64,
}

impl StoredFile {
    /// The blob's hash.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Spool {
    pub(crate) fn create(dir: crate::blobs::BlobDir) -> Result<Spool, StoreError> {
        let path = dir.temp_path("spool");
        let f = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        Ok(Spool {
            dir,
            path,
            file: Some(std::io::BufWriter::with_capacity(256 * 1024, f)),
            hasher: ContentHasher::new(),
            len: 0,
        })
    }

    /// Appends bytes (buffered; not yet durable).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let f = self.file.as_mut().ok_or(StoreError::WriterGone)?;
        f.write_all(bytes)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash of what was written so far.
    pub fn hash(&self) -> ContentHash {
        self.hasher.finish()
    }

    /// Up to `n` bytes from offset `from` of what was written (for parsing a summary before
    /// the blob is made durable).
    pub fn read_range(&mut self, from: u64, n: usize) -> Result<Vec<u8>, StoreError> {
        let f = self.file.as_mut().ok_or(StoreError::WriterGone)?;
        f.flush().map_err(|e| StoreError::io(&self.path, e))?;
        let mut r = File::open(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        r.seek(SeekFrom::Start(from))
            .map_err(|e| StoreError::io(&self.path, e))?;
        let mut out = Vec::with_capacity(n.min(self.len.saturating_sub(from) as usize));
        r.take(n as u64)
            .read_to_end(&mut out)
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(out)
    }

    /// Makes the bytes a durable blob file (`fsync`, rename into place, directory `fsync`).
    /// Blocking: call it off the async runtime's worker threads for large files.
    pub fn finish(mut self) -> Result<StoredFile, StoreError> {
        let hash = self.hash();
        let f = self.file.take().ok_or(StoreError::WriterGone)?;
        let f = f
            .into_inner()
            .map_err(|e| StoreError::io(&self.path, e.into_error()))?;
        f.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
        drop(f);
        self.dir.adopt_synced(&self.path, &hash)?;
        Ok(StoredFile {
            hash,
            len: self.len,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Not finished (refused, failed, or the association ended): the bytes are garbage.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
