//! Roster edits (`roster.log`): a centre head's replacement of one centre's roster, one JSON
//! line per edit, appended and `fdatasync`ed before the caller is answered, never rewritten.
//! At start the latest edit of each centre replaces the configured roster of that centre. A
//! torn last line (a crash mid-append, never acknowledged) is cut at open; a damaged line
//! elsewhere is refused.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use huren_workflow::RosterEntry;
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
use crate::streams::{Streams, Write};
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

/// The roster edits of one store directory (`roster.log`), or of a cluster's event table:
/// each centre a stream whose state is its latest edit.
pub struct RosterLog {
    streams: Streams<RosterEdit, RosterEdit, RosterEdit>,
}

/// Why an edit was not recorded: its check refused it, or the store failed.
enum Refusal<E> {
    Check(E),
    Store(StoreError),
}

impl<E> From<StoreError> for Refusal<E> {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

/// An edit replaces the centre's roster.
fn fold(_: Option<&RosterEdit>, e: &RosterEdit) -> Result<RosterEdit, String> {
    Ok(e.clone())
}

fn line(_: &str, e: RosterEdit) -> RosterEdit {
    e
}

fn split(e: RosterEdit) -> (String, RosterEdit) {
    (e.centre.clone(), e)
}

/// The events of `dir/roster.log` as a cluster's table holds them: `(stream, event)` in order.
pub(crate) fn file_events(
    dir: &std::path::Path,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    crate::jsonl::read_lines::<RosterEdit>(dir, "roster.log")?
        .into_iter()
        .map(|l| {
            let (id, e) = split(l);
            serde_json::to_value(&e)
                .map(|v| (id, v))
                .map_err(|e| StoreError::Corrupt(format!("roster.log: {e}")))
        })
        .collect()
}

impl RosterLog {
    /// Opens (or creates) `dir/roster.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<RosterLog, StoreError> {
        let (streams, _) = Streams::open_file(dir, "roster.log", fold, line, split)?;
        Ok(RosterLog { streams })
    }

    /// The roster edits of a cluster's event table; writes go there, and
    /// [`RosterLog::refresh`] brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<RosterLog, StoreError> {
        let (streams, _) = Streams::open_shared(sink, fold, line)?;
        Ok(RosterLog { streams })
    }

    /// Reads the edits of `centre` this node has not seen; whether there were any.
    pub fn refresh(&self, centre: &str) -> Result<bool, StoreError> {
        self.streams.refresh(centre)
    }

    /// Refreshes every stream with events this node has not seen (after notifications
    /// may have been missed); how many changed.
    pub fn refresh_all(&self) -> Result<usize, StoreError> {
        Ok(self.streams.refresh_all()?.len())
    }

    /// Records an edit if `check` accepts it (run on the centre's roster as it is, under the
    /// append lock, or again after another node's edit on a cluster); `Ok(Err(_))` is the
    /// check's refusal, with nothing written. Durable when it returns.
    pub fn record<E>(
        &self,
        edit: RosterEdit,
        mut check: impl FnMut(&RosterEdit) -> Result<(), E>,
    ) -> Result<Result<(), E>, StoreError> {
        let centre = edit.centre.clone();
        let out = self.streams.write(&centre, |_| match check(&edit) {
            Ok(()) => Ok(Write::Append(vec![edit.clone()], edit.clone())),
            Err(e) => Err(Refusal::Check(e)),
        });
        match out {
            Ok(_) => Ok(Ok(())),
            Err(Refusal::Check(e)) => Ok(Err(e)),
            Err(Refusal::Store(e)) => Err(e),
        }
    }

    /// The latest edit of every centre that has one, by centre.
    pub fn latest(&self) -> Vec<RosterEdit> {
        let mut v = self.streams.select(|_| true);
        v.sort_by(|a, b| a.centre.cmp(&b.centre));
        v
    }

    /// The latest edit of one centre.
    pub fn of(&self, centre: &str) -> Option<RosterEdit> {
        self.streams.get(centre)
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
