//! Roster edits (`roster.log`): a centre head's replacement of one centre's roster, one JSON
//! line per edit, appended and `fdatasync`ed before the caller is answered, never rewritten.
//! At start the latest edit of each centre replaces the configured roster of that centre. A
//! torn last line (a crash mid-append, never acknowledged) is cut at open; a damaged line
//! elsewhere is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use huren_workflow::RosterEntry;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// One edit: the whole roster of one centre after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEdit {
    /// The centre's id.
    pub centre: String,
    /// Its roster from now on.
    pub entries: Vec<RosterEntry>,
    /// Who edited it (principal id).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The roster edits of one store directory.
pub struct RosterLog {
    path: PathBuf,
    file: Mutex<File>,
    latest: Mutex<HashMap<String, RosterEdit>>,
}

impl RosterLog {
    /// Opens (or creates) `dir/roster.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<RosterLog, StoreError> {
        let path = dir.as_ref().join("roster.log");
        let io = |e| StoreError::io(&path, e);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut latest = HashMap::new();
        let mut good = 0u64;
        let mut lines = BufReader::new(&file).split(b'\n').peekable();
        let mut n = 0;
        while let Some(line) = lines.next() {
            n += 1;
            let line = line.map_err(io)?;
            let last = lines.peek().is_none();
            match serde_json::from_slice::<RosterEdit>(&line) {
                Ok(e) => {
                    latest.insert(e.centre.clone(), e);
                }
                Err(_) if line.is_empty() && last => {}
                Err(e) if last => {
                    tracing::warn!(line = n, error = %e, "roster.log ends in a torn record; cutting it off");
                    file.set_len(good).map_err(io)?;
                    file.sync_data().map_err(io)?;
                    break;
                }
                Err(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: line {n}: {e}",
                        path.display()
                    )))
                }
            }
            good += line.len() as u64 + 1;
        }
        Ok(RosterLog {
            path,
            file: Mutex::new(file),
            latest: Mutex::new(latest),
        })
    }

    /// Records an edit; returns once it is durable. `check` runs under the append lock first
    /// (the caller's validation and swap); nothing is written when it fails.
    pub fn record<E>(
        &self,
        edit: RosterEdit,
        check: impl FnOnce(&RosterEdit) -> Result<(), E>,
    ) -> Result<Result<(), E>, StoreError> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| StoreError::Corrupt("roster: poisoned lock".into()))?;
        if let Err(e) = check(&edit) {
            return Ok(Err(e));
        }
        let mut bytes =
            serde_json::to_vec(&edit).map_err(|e| StoreError::Corrupt(format!("roster: {e}")))?;
        bytes.push(b'\n');
        let io = |e| StoreError::io(&self.path, e);
        let len = f.metadata().map_err(io)?.len();
        if let Err(e) = f.write_all(&bytes).and_then(|_| f.sync_data()) {
            let _ = f.set_len(len);
            return Err(io(e));
        }
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(edit.centre.clone(), edit);
        Ok(Ok(()))
    }

    /// The latest edit of every centre edited so far.
    pub fn latest(&self) -> Vec<RosterEdit> {
        let mut v: Vec<RosterEdit> = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.centre.cmp(&b.centre));
        v
    }

    /// The latest edit of one centre.
    pub fn of(&self, centre: &str) -> Option<RosterEdit> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(centre)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(centre: &str, reader: &str) -> RosterEdit {
        RosterEdit {
            centre: centre.into(),
            entries: vec![RosterEntry {
                reader: reader.into(),
                centre: centre.into(),
                days: vec![],
                from: None,
                to: None,
            }],
            by: "dr.chief".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn the_latest_edit_per_centre_survives_reopen_and_a_refused_check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = RosterLog::open(dir.path()).unwrap();
            r.record::<()>(edit("a", "x"), |_| Ok(())).unwrap().unwrap();
            r.record::<()>(edit("a", "y"), |_| Ok(())).unwrap().unwrap();
            r.record::<()>(edit("b", "z"), |_| Ok(())).unwrap().unwrap();
            assert_eq!(r.record(edit("b", "w"), |_| Err("no")).unwrap(), Err("no"));
        }
        let p = dir.path().join("roster.log");
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
        let mut b = std::fs::read(&p).unwrap();
        b.extend_from_slice(b"{\"centre\":\"a\",\"ent");
        std::fs::write(&p, &b).unwrap();
        let r = RosterLog::open(dir.path()).unwrap();
        assert_eq!(r.of("a").unwrap().entries[0].reader, "y");
        assert_eq!(r.of("b").unwrap().entries[0].reader, "z");
        assert_eq!(r.latest().len(), 2);
        std::fs::write(&p, b"garbage\n{}\n").unwrap();
        assert!(RosterLog::open(dir.path()).is_err());
    }
}
