//! Content-addressed blob directory: `objects/ab/cdef…` named by BLAKE3 hex.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use huren_model::ContentHash;

use crate::StoreError;

/// The blob directory. Blobs are never rewritten: a file at a hash's path is complete
/// because it is renamed into place only after its data was synced.
#[derive(Clone)]
pub(crate) struct BlobDir {
    root: Arc<PathBuf>,
    counter: Arc<AtomicU64>,
}

/// A blob written to a temp file, not yet in place.
pub(crate) struct Staged {
    tmp: PathBuf,
    hash: ContentHash,
}

impl BlobDir {
    pub(crate) fn open(root: PathBuf) -> Result<Self, StoreError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        // Temp files of a crashed writer are garbage: nothing refers to them.
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(BlobDir {
            root: Arc::new(root),
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    pub(crate) fn exists(&self, hash: &ContentHash) -> bool {
        self.path(hash).is_file()
    }

    pub(crate) fn read(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.path(hash);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }

    /// Writes `bytes` to a temp file (not synced: see [`BlobDir::barrier`]).
    pub(crate) fn stage(&self, hash: ContentHash, bytes: &[u8]) -> Result<Staged, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}-{n}-{}", std::process::id(), &hash.hex()[..16]));
        let mut f = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
        if !cfg!(target_os = "linux") {
            f.sync_data().map_err(|e| StoreError::io(&tmp, e))?;
        }
        Ok(Staged { tmp, hash })
    }

    /// Makes everything written so far durable. On Linux one `syncfs(2)` covers all staged
    /// files of a group (one call instead of one `fsync` per blob); elsewhere staged files
    /// were synced one by one and this syncs the shard directories.
    pub(crate) fn barrier(&self, shard_dirs: &[PathBuf]) -> Result<(), StoreError> {
        #[cfg(target_os = "linux")]
        {
            let _ = shard_dirs;
            let f = File::open(&*self.root).map_err(|e| StoreError::io(&self.root, e))?;
            rustix::fs::syncfs(&f).map_err(|e| StoreError::io(&self.root, e.into()))?;
        }
        #[cfg(not(target_os = "linux"))]
        for d in shard_dirs {
            let f = File::open(d).map_err(|e| StoreError::io(d, e))?;
            f.sync_all().map_err(|e| StoreError::io(d, e))?;
        }
        Ok(())
    }

    /// Renames a staged blob into place; returns its shard directory.
    pub(crate) fn install(&self, staged: Staged) -> Result<PathBuf, StoreError> {
        let dest = self.path(&staged.hash);
        let shard = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.to_path_buf());
        if !shard.is_dir() {
            fs::create_dir_all(&shard).map_err(|e| StoreError::io(&shard, e))?;
        }
        fs::rename(&staged.tmp, &dest).map_err(|e| StoreError::io(&dest, e))?;
        Ok(shard)
    }

    /// Re-hashes every blob; returns problems and the number checked.
    pub(crate) fn verify_all(&self) -> Result<(Vec<String>, u64), StoreError> {
        let mut problems = Vec::new();
        let mut n = 0u64;
        let rd = fs::read_dir(&*self.root).map_err(|e| StoreError::io(&self.root, e))?;
        for shard in rd.flatten() {
            let name = shard.file_name().to_string_lossy().to_string();
            if name == "tmp" || !shard.path().is_dir() {
                continue;
            }
            let inner = fs::read_dir(shard.path()).map_err(|e| StoreError::io(&shard.path(), e))?;
            for f in inner.flatten() {
                n += 1;
                let fname = f.file_name().to_string_lossy().to_string();
                let claimed = format!("blake3:{name}{fname}");
                let bytes = fs::read(f.path()).map_err(|e| StoreError::io(&f.path(), e))?;
                let actual = ContentHash::of(&bytes).to_string();
                if actual != claimed {
                    problems.push(format!("blob {claimed} has content {actual}"));
                }
            }
        }
        Ok((problems, n))
    }
}
