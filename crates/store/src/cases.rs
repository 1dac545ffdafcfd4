//! Chest-pain cases (`cases.log`, issue 18): one JSON line per case event
//! ([`huren_chestpain::CaseEvent`]: opened from a STEMI alert, milestones stamped, a
//! green-channel referral made or withdrawn), appended and `fdatasync`ed before the caller is
//! answered, never rewritten; each case held in memory as the fold of its events. An event is
//! checked by `huren-chestpain` against the case as it is, under the append lock, so a
//! milestone is stamped once however many clicks race; an identical re-stamp writes nothing.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use huren_chestpain::{Case, CaseError, CaseEvent};
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
use crate::streams::{Streams, Write};
use crate::StoreError;

#[derive(Serialize, Deserialize)]
struct Line {
    case: String,
    #[serde(flatten)]
    event: CaseEvent,
}

/// Why a case event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CaseStoreError {
    /// No case has this id.
    #[error("no case {0}")]
    Unknown(String),
    /// The event does not apply to the case as it is (nothing was written).
    #[error(transparent)]
    Refused(#[from] CaseError),
    /// Writing it failed (nothing was recorded).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The chest-pain cases of one store directory (`cases.log`), or of a cluster's event table.
pub struct CaseStore {
    streams: Streams<Case, CaseEvent, Line>,
}

/// The opening event makes the case; the others are replayed onto it as recorded.
fn fold(c: Option<&Case>, e: &CaseEvent) -> Result<Case, String> {
    match c {
        None => Case::open(e).map_err(|e| e.to_string()),
        Some(c) => c.replay_next(e).map_err(|e| e.to_string()),
    }
}

fn line(id: &str, event: CaseEvent) -> Line {
    Line {
        case: id.to_string(),
        event,
    }
}

fn split(l: Line) -> (String, CaseEvent) {
    (l.case, l.event)
}

/// The events of `dir/cases.log` as a cluster's table holds them: `(stream, event)` in order.
pub(crate) fn file_events(
    dir: &std::path::Path,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    crate::jsonl::read_lines::<Line>(dir, "cases.log")?
        .into_iter()
        .map(|l| {
            let (id, e) = split(l);
            serde_json::to_value(&e)
                .map(|v| (id, v))
                .map_err(|e| StoreError::Corrupt(format!("cases.log: {e}")))
        })
        .collect()
}

impl CaseStore {
    /// The case id of a STEMI alert (one case per alert).
    pub fn id_of_alert(alert: &str) -> String {
        format!("c-{}", alert.strip_prefix("a-").unwrap_or(alert))
    }

    /// Opens (or creates) `dir/cases.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<CaseStore, StoreError> {
        let (streams, _) = Streams::open_file(dir, "cases.log", fold, line, split)?;
        Ok(CaseStore { streams })
    }

    /// The cases of a cluster's event table; writes go there, and [`CaseStore::refresh`]
    /// brings in what other nodes wrote.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<CaseStore, StoreError> {
        let (streams, _) = Streams::open_shared(sink, fold, line)?;
        Ok(CaseStore { streams })
    }

    /// Reads the events of case `id` this node has not seen; whether there were any. A no-op
    /// on the file back end.
    pub fn refresh(&self, id: &str) -> Result<bool, StoreError> {
        self.streams.refresh(id)
    }

    /// Refreshes every stream with events this node has not seen (after notifications
    /// may have been missed); how many changed.
    pub fn refresh_all(&self) -> Result<usize, StoreError> {
        Ok(self.streams.refresh_all()?.len())
    }

    /// Opens a case from its opening event unless it exists; the case and whether it is new.
    /// Durable when it returns.
    pub fn open_case(&self, opened: CaseEvent) -> Result<(Case, bool), CaseStoreError> {
        let case = Case::open(&opened)?;
        let id = case.id.clone();
        self.streams.write(&id, |held| {
            Ok::<_, CaseStoreError>(match held {
                Some(c) => Write::Keep(c.clone()),
                None => Write::Append(vec![opened.clone()], case.clone()),
            })
        })
    }

    /// Applies an event, checked by `huren-chestpain` against the case as it is; an
    /// identical repeat (or one that changes nothing) writes nothing. Durable when it
    /// returns.
    pub fn apply(
        &self,
        id: &str,
        event: CaseEvent,
        now: DateTime<Utc>,
    ) -> Result<Case, CaseStoreError> {
        let attempt = |held: Option<&Case>| -> Result<Write<Case, CaseEvent>, CaseStoreError> {
            let current = held.ok_or_else(|| CaseStoreError::Unknown(id.to_string()))?;
            let next = current.apply(&event, now)?;
            Ok(if current.is_duplicate(&event) || next == *current {
                Write::Keep(next)
            } else {
                Write::Append(vec![event.clone()], next)
            })
        };
        Ok(self.with_refresh(id, attempt)?.0)
    }

    /// Several stamps at once (an ADT message's): one durable append for the ones that apply,
    /// each checked against the case as the earlier ones left it; a refused one is skipped
    /// and returned with its reason, an identical re-stamp writes nothing. The case after.
    pub fn stamp_all(
        &self,
        id: &str,
        stamps: Vec<(huren_chestpain::Milestone, huren_chestpain::Stamp)>,
        now: DateTime<Utc>,
    ) -> Result<(Case, Vec<(huren_chestpain::Milestone, CaseError)>), CaseStoreError> {
        let refused = std::cell::RefCell::new(Vec::new());
        let attempt = |held: Option<&Case>| -> Result<Write<Case, CaseEvent>, CaseStoreError> {
            let mut case = held
                .ok_or_else(|| CaseStoreError::Unknown(id.to_string()))?
                .clone();
            let mut out = refused.borrow_mut();
            out.clear();
            let mut events = Vec::new();
            for (milestone, stamp) in &stamps {
                let event = CaseEvent::Stamped {
                    milestone: *milestone,
                    stamp: stamp.clone(),
                };
                match case.apply(&event, now) {
                    Ok(next) if case.is_duplicate(&event) || next == case => {}
                    Ok(next) => {
                        case = next;
                        events.push(event);
                    }
                    Err(e) => out.push((*milestone, e)),
                }
            }
            Ok(if events.is_empty() {
                Write::Keep(case)
            } else {
                Write::Append(events, case)
            })
        };
        let (case, _) = self.with_refresh(id, attempt)?;
        Ok((case, refused.into_inner()))
    }

    /// A write; on a shared table, a case this node has not seen is looked up once first.
    fn with_refresh(
        &self,
        id: &str,
        attempt: impl FnMut(Option<&Case>) -> Result<Write<Case, CaseEvent>, CaseStoreError> + Copy,
    ) -> Result<(Case, bool), CaseStoreError> {
        match self.streams.write(id, attempt) {
            Err(CaseStoreError::Unknown(_)) if self.streams.is_shared() && self.refresh(id)? => {
                self.streams.write(id, attempt)
            }
            other => other,
        }
    }

    /// One case.
    pub fn get(&self, id: &str) -> Option<Case> {
        self.streams.get(id)
    }

    /// The cases `keep` selects, cloned.
    pub fn select(&self, keep: impl Fn(&Case) -> bool) -> Vec<Case> {
        self.streams.select(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_chestpain::{Milestone, Source, Stamp};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn opened() -> CaseEvent {
        CaseEvent::Opened {
            id: "c-1".into(),
            alert: "a-1".into(),
            institution: "SQ".into(),
            pci_institution: "ZX".into(),
            group: "pci".into(),
            patient: "p".into(),
            ecg_report: "blake3:00".into(),
            at: t(0),
        }
    }

    fn stamp(m: Milestone, at: i64) -> CaseEvent {
        CaseEvent::Stamped {
            milestone: m,
            stamp: Stamp {
                at: t(at),
                by: Some("dr".into()),
                source: Source::Entered,
                recorded_at: t(at),
            },
        }
    }

    #[test]
    fn stamps_are_durable_once_and_refusals_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = CaseStore::open(dir.path()).unwrap();
            assert!(s.open_case(opened()).unwrap().1);
            assert!(!s.open_case(opened()).unwrap().1);
            s.apply("c-1", stamp(Milestone::DoorIn, 10), t(20)).unwrap();
            // The same click again: nothing written; another time: refused.
            s.apply("c-1", stamp(Milestone::DoorIn, 10), t(20)).unwrap();
            assert!(matches!(
                s.apply("c-1", stamp(Milestone::DoorIn, 15), t(20)),
                Err(CaseStoreError::Refused(_))
            ));
            // Door-out before door-in: refused.
            assert!(matches!(
                s.apply("c-1", stamp(Milestone::DoorOut, 5), t(20)),
                Err(CaseStoreError::Refused(_))
            ));
            assert!(matches!(
                s.apply("nope", stamp(Milestone::DoorOut, 5), t(20)),
                Err(CaseStoreError::Unknown(_))
            ));
        }
        let s = CaseStore::open(dir.path()).unwrap();
        let c = s.get("c-1").unwrap();
        assert_eq!(c.at(Milestone::DoorIn), Some(t(10)));
        assert_eq!(c.at(Milestone::DoorOut), None);
        let log = std::fs::read_to_string(dir.path().join("cases.log")).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");
    }

    #[test]
    fn several_stamps_go_down_together_and_a_refused_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = CaseStore::open(dir.path()).unwrap();
            s.open_case(opened()).unwrap();
            let st = |m, at| match stamp(m, at) {
                CaseEvent::Stamped { stamp, .. } => (m, stamp),
                _ => unreachable!(),
            };
            // Door-out before door-in: refused and skipped; the others stored.
            let (c, refused) = s
                .stamp_all(
                    "c-1",
                    vec![
                        st(Milestone::DoorIn, 10),
                        st(Milestone::DoorOut, 5),
                        st(Milestone::TransferDecision, 12),
                    ],
                    t(20),
                )
                .unwrap();
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, Milestone::DoorOut);
            assert_eq!(c.at(Milestone::TransferDecision), Some(t(12)));
            // Again: nothing new written.
            s.stamp_all("c-1", vec![st(Milestone::DoorIn, 10)], t(20))
                .unwrap();
        }
        let s = CaseStore::open(dir.path()).unwrap();
        let c = s.get("c-1").unwrap();
        assert_eq!(c.at(Milestone::DoorIn), Some(t(10)));
        assert_eq!(c.at(Milestone::DoorOut), None);
        let log = std::fs::read_to_string(dir.path().join("cases.log")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
    }
}
