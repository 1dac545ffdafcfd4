//! Roster edits (`roster.log`): a centre head's replacement of one centre's roster, one JSON
//! line per edit, appended and `fdatasync`ed before the caller is answered, never rewritten.
//! At start the latest edit of each centre replaces the configured roster of that centre. A
//! torn last line (a crash mid-append, never acknowledged) is cut at open; a damaged line
//! elsewhere is refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use huren_workflow::RosterEntry;
use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
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
    log: JsonLines,
    latest: Mutex<HashMap<String, RosterEdit>>,
}

impl RosterLog {
    /// Opens (or creates) `dir/roster.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<RosterLog, StoreError> {
        let mut latest = HashMap::new();
        let (log, _) = JsonLines::open(dir, "roster.log", |e: RosterEdit| {
            latest.insert(e.centre.clone(), e);
            Ok(())
        })?;
        Ok(RosterLog {
            log,
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
        let mut f = self.log.lock()?;
        if let Err(e) = check(&edit) {
            return Ok(Err(e));
        }
        self.log.append(&mut f, &edit)?;
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
