//! Chest-pain cases (`cases.log`, issue 18): one JSON line per case event
//! ([`huren_chestpain::CaseEvent`]: opened from a STEMI alert, milestones stamped, a
//! green-channel referral made or withdrawn), appended and `fdatasync`ed before the caller is
//! answered, never rewritten; each case held in memory as the fold of its events. An event is
//! checked by `huren-chestpain` against the case as it is, under the append lock, so a
//! milestone is stamped once however many clicks race; an identical re-stamp writes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use huren_chestpain::{Case, CaseError, CaseEvent};
use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
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

/// The chest-pain cases of one store directory.
pub struct CaseStore {
    log: JsonLines,
    cases: RwLock<HashMap<String, Case>>,
}

impl CaseStore {
    /// The case id of an alert: one case per STEMI alert.
    pub fn id_of_alert(alert: &str) -> String {
        format!("c-{}", alert.strip_prefix("a-").unwrap_or(alert))
    }

    /// Opens (or creates) `dir/cases.log` and replays it.
    pub fn open(dir: impl AsRef<Path>) -> Result<CaseStore, StoreError> {
        let mut cases: HashMap<String, Case> = HashMap::new();
        let (log, _) = JsonLines::open(dir, "cases.log", |l: Line| {
            let next = match cases.get(&l.case) {
                None => Case::open(&l.event).map_err(|e| e.to_string())?,
                Some(c) => c.replay_next(&l.event).map_err(|e| e.to_string())?,
            };
            cases.insert(l.case, next);
            Ok(())
        })?;
        Ok(CaseStore {
            log,
            cases: RwLock::new(cases),
        })
    }

    /// Opens a case unless one with its id exists; the case and whether it is new. Durable
    /// when it returns.
    pub fn open_case(&self, opened: CaseEvent) -> Result<(Case, bool), CaseStoreError> {
        let case = Case::open(&opened)?;
        let mut f = self.log.lock()?;
        if let Some(c) = self.get(&case.id) {
            return Ok((c, false));
        }
        self.log.append(
            &mut f,
            &Line {
                case: case.id.clone(),
                event: opened,
            },
        )?;
        if let Ok(mut m) = self.cases.write() {
            m.insert(case.id.clone(), case.clone());
        }
        Ok((case, true))
    }

    /// Applies an event at `now`: checked against the case as it is, made durable, then
    /// answered. Nothing is written when it is refused or changes nothing.
    pub fn apply(
        &self,
        id: &str,
        event: CaseEvent,
        now: DateTime<Utc>,
    ) -> Result<Case, CaseStoreError> {
        let mut f = self.log.lock()?;
        let current = self
            .get(id)
            .ok_or_else(|| CaseStoreError::Unknown(id.to_string()))?;
        let next = current.apply(&event, now)?;
        if current.is_duplicate(&event) || next == current {
            return Ok(next);
        }
        self.log.append(
            &mut f,
            &Line {
                case: id.to_string(),
                event,
            },
        )?;
        if let Ok(mut m) = self.cases.write() {
            m.insert(id.to_string(), next.clone());
        }
        Ok(next)
    }

    /// Stamps several milestones of one case at `now`, made durable together (one fsync):
    /// each checked against the case as the earlier ones left it; a refused one is skipped
    /// and returned with its reason, an identical re-stamp writes nothing. The case after.
    pub fn stamp_all(
        &self,
        id: &str,
        stamps: Vec<(huren_chestpain::Milestone, huren_chestpain::Stamp)>,
        now: DateTime<Utc>,
    ) -> Result<(Case, Vec<(huren_chestpain::Milestone, CaseError)>), CaseStoreError> {
        let mut f = self.log.lock()?;
        let mut case = self
            .get(id)
            .ok_or_else(|| CaseStoreError::Unknown(id.to_string()))?;
        let mut lines = Vec::new();
        let mut refused = Vec::new();
        for (milestone, stamp) in stamps {
            let event = CaseEvent::Stamped { milestone, stamp };
            match case.apply(&event, now) {
                Ok(next) if case.is_duplicate(&event) || next == case => {}
                Ok(next) => {
                    case = next;
                    lines.push(Line {
                        case: id.to_string(),
                        event,
                    });
                }
                Err(e) => refused.push((milestone, e)),
            }
        }
        self.log.append_all(&mut f, &lines)?;
        if !lines.is_empty() {
            if let Ok(mut m) = self.cases.write() {
                m.insert(id.to_string(), case.clone());
            }
        }
        Ok((case, refused))
    }

    /// One case.
    pub fn get(&self, id: &str) -> Option<Case> {
        self.cases.read().ok()?.get(id).cloned()
    }

    /// The cases `keep` selects, cloned.
    pub fn select(&self, keep: impl Fn(&Case) -> bool) -> Vec<Case> {
        self.cases
            .read()
            .map(|m| m.values().filter(|c| keep(c)).cloned().collect())
            .unwrap_or_default()
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
