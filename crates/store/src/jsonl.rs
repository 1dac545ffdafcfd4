//! The append-only JSON-lines logs beside the journal (`tasks.log`, `roster.log`,
//! `outbox.log`, `consents.log`, `alerts.log`): one JSON value per line, appended and
//! `fdatasync`ed under one lock before the caller goes on, never rewritten. At open every line
//! is replayed in order; a torn last line (a crash mid-append, never acknowledged) is cut off,
//! a damaged line elsewhere — or one the replay refuses — is refused with its line number.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// One JSON-lines log file and the lock its appends are made under.
pub(crate) struct JsonLines {
    path: PathBuf,
    file: Mutex<File>,
}

/// Reads `dir/name` without opening it for writing: every complete line decoded, in order
/// (a torn last line is left out, as the replay would cut it); none when the file is absent.
/// For a store no process writes to (`huren migrate`).
pub(crate) fn read_lines<T: DeserializeOwned>(
    dir: impl AsRef<Path>,
    name: &str,
) -> Result<Vec<T>, StoreError> {
    let path = dir.as_ref().join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let mut out = Vec::new();
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let last = lines.peek().is_none();
        match serde_json::from_slice::<T>(line) {
            Ok(v) => out.push(v),
            Err(_) if last => {}
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "{}: line {}: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

impl JsonLines {
    /// Opens (or creates) `dir/name` and passes every complete line, decoded, to `each` in
    /// order; `each` refusing a line (`Err(why)`) refuses the file. Returns the log and how
    /// many lines it holds.
    pub(crate) fn open<T: DeserializeOwned>(
        dir: impl AsRef<Path>,
        name: &str,
        mut each: impl FnMut(T) -> Result<(), String>,
    ) -> Result<(JsonLines, u64), StoreError> {
        let path = dir.as_ref().join(name);
        let io = |e| StoreError::io(&path, e);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut good = 0u64;
        let mut count = 0u64;
        let mut lines = BufReader::new(&file).split(b'\n').peekable();
        let mut n = 0;
        while let Some(line) = lines.next() {
            n += 1;
            let line = line.map_err(io)?;
            let last = lines.peek().is_none();
            let damaged =
                |e: String| StoreError::Corrupt(format!("{}: line {n}: {e}", path.display()));
            match serde_json::from_slice::<T>(&line) {
                Ok(v) => {
                    each(v).map_err(damaged)?;
                    count += 1;
                }
                Err(_) if line.is_empty() && last => {}
                Err(e) if last => {
                    tracing::warn!(file = name, line = n, error = %e, "log ends in a torn record; cutting it off");
                    file.set_len(good).map_err(io)?;
                    file.sync_data().map_err(io)?;
                    break;
                }
                Err(e) => return Err(damaged(e.to_string())),
            }
            good += line.len() as u64 + 1;
        }
        Ok((
            JsonLines {
                path,
                file: Mutex::new(file),
            },
            count,
        ))
    }

    /// The append lock: hold it while checking an event against the current state and
    /// appending it, so the check and the append are one step.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, File>, StoreError> {
        self.file
            .lock()
            .map_err(|_| StoreError::Corrupt(format!("{}: poisoned lock", self.path.display())))
    }

    /// Appends one value as a line and makes it durable; a failed append is rolled back.
    pub(crate) fn append<T: Serialize>(&self, f: &mut File, v: &T) -> Result<(), StoreError> {
        self.append_all(f, std::slice::from_ref(v))
    }

    /// Appends values as lines and makes them durable together (one `fdatasync`); a failed
    /// append is rolled back whole.
    pub(crate) fn append_all<T: Serialize>(
        &self,
        f: &mut File,
        vs: &[T],
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        for v in vs {
            serde_json::to_writer(&mut bytes, v)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.path.display())))?;
            bytes.push(b'\n');
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let io = |e| StoreError::io(&self.path, e);
        let len = f.metadata().map_err(io)?.len();
        if let Err(e) = f.write_all(&bytes).and_then(|_| f.sync_data()) {
            // Roll back a partial append; the caller is told it failed.
            let _ = f.set_len(len);
            return Err(io(e));
        }
        Ok(())
    }
}
