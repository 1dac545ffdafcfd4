//! Chest-pain door times from the HIS (issue 18, docs/chest-pain.md "ADT A01/A03/A04"): an
//! ADT A01 / A04 (admitted, registered) stamps `door_in` at the case's sending hospital or
//! `arrival` at its PCI hospital, an A03 (discharged) `door_out` at the sending hospital.
//!
//! The case is the newest *current* one (opened in the last [`CURRENT_HOURS`] hours) of the
//! message's person where the message's institution plays that part, preferring one that
//! lacks the milestone. The stamp goes through `CaseStore::apply` (checked by the case model,
//! fsynced) before the ACK; a stamp the model refuses is not the sender's error: AA with an
//! MSA-3 text saying why.

use chrono::{DateTime, Duration, Utc};
use huren_chestpain::{Case, CaseError, CaseEvent, Milestone, Source, Stamp};
use huren_hl7::Visit;
use huren_model::PatientId;
use huren_store::{CaseStoreError, StoreError};
use serde::Serialize;

use crate::Gateway;

/// How long after its opening a case takes ADT door times.
pub const CURRENT_HOURS: i64 = 24;

/// The case and milestone an ADT visit stamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The case id.
    pub case: String,
    /// `door_in`, `door_out` or `arrival`.
    pub milestone: Milestone,
}

/// What an ADT visit did to a case (no patient data).
#[derive(Clone, Debug, Serialize)]
pub struct CaseStamp {
    /// The case id.
    pub case: String,
    /// The milestone.
    pub milestone: Milestone,
    /// The visit time.
    pub at: DateTime<Utc>,
    /// `stamped`, `unchanged` (the same time again) or `refused`.
    pub result: &'static str,
    /// Why it was refused (the MSA-3 text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The milestone a visit from `institution` stamps on `case`, if that institution plays a
/// part there: the sending hospital's door in (A01/A04) or out (A03), else the PCI hospital's
/// arrival (A01/A04).
fn milestone_for(case: &Case, institution: &str, visit: &Visit) -> Option<Milestone> {
    let arriving = visit.event.is_arrival();
    if case.institution == institution {
        Some(if arriving {
            Milestone::DoorIn
        } else {
            Milestone::DoorOut
        })
    } else if arriving && case.pci_institution == institution {
        Some(Milestone::Arrival)
    } else {
        None
    }
}

/// How long before a case opened (its STEMI alert) a visit's time may lie and still be stamped
/// on it: a day. Door-in at the sending hospital comes before the ECG, by minutes or hours; an
/// admission older than that is another episode (e.g. an old A01 sent again).
pub const VISIT_BEFORE_CASE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The MSA-3 text (≤ 80 characters) for a refused stamp.
fn reason(m: Milestone, e: &CaseError) -> String {
    let m = m.as_str();
    match e {
        CaseError::AlreadyStamped { .. } => format!("{m} not stamped: it has another time"),
        CaseError::OutOfOrder { earlier, later, .. } => {
            format!("{m} not stamped: {later} would precede {earlier}")
        }
        CaseError::InFuture { .. } => format!("{m} not stamped: the time lies in the future"),
        e => format!("{m} not stamped: {e}"),
    }
}

impl Gateway {
    /// The case a visit from `institution` stamps, if any: see the module doc. Reads the
    /// identity index, so call it after committing the message's own identity links.
    pub fn visit_target(
        &self,
        institution: &str,
        visit: &Visit,
    ) -> Result<Option<Target>, StoreError> {
        let store = self.ingest_store();
        let since = Utc::now() - Duration::hours(CURRENT_HOURS);
        let mut cases: Vec<(Case, Milestone)> = store
            .cases()
            .select(|c| c.opened_at >= since && milestone_for(c, institution, visit).is_some())
            .into_iter()
            .filter_map(|c| milestone_for(&c, institution, visit).map(|m| (c, m)))
            .collect();
        if cases.is_empty() {
            return Ok(None);
        }
        let Ok(local) = visit.patient.local_key().parse::<PatientId>() else {
            return Ok(None);
        };
        let person = store.person_key(&local)?;
        // A case keeps the person key of its opening; the local key it names may have been
        // linked to a national ID since, so compare the current person of both.
        let mut mine = Vec::new();
        for (c, m) in cases.drain(..) {
            let Ok(id) = c.patient.parse::<PatientId>() else {
                continue;
            };
            if c.patient == person || store.person_key(&id)? == person {
                mine.push((c, m));
            }
        }
        mine.sort_by_key(|(c, _)| std::cmp::Reverse(c.opened_at));
        let pick = mine
            .iter()
            .find(|(c, m)| !c.stamps.contains_key(m))
            .or(mine.first());
        Ok(pick.map(|(c, m)| Target {
            case: c.id.clone(),
            milestone: *m,
        }))
    }

    /// Stamps `target` with the visit's time (source `adt`, by `adt:` + the institution).
    /// Durable when it returns `Ok`; a refusal by the case model is an `Ok` with its reason.
    pub fn stamp_visit(
        &self,
        institution: &str,
        visit: &Visit,
        target: &Target,
    ) -> Result<CaseStamp, StoreError> {
        let now = Utc::now();
        let m = target.milestone;
        let mut out = CaseStamp {
            case: target.case.clone(),
            milestone: m,
            at: now,
            result: "refused",
            reason: None,
        };
        let Ok(at) = DateTime::parse_from_rfc3339(&visit.at) else {
            out.reason = Some(format!("{} not stamped: unreadable time", m.as_str()));
            return Ok(out);
        };
        out.at = at.with_timezone(&Utc);
        let cases = self.ingest_store().cases();
        // A visit that began a day before the case opened is not this chest-pain episode (an
        // old admission re-sent): not stamped.
        if cases
            .get(&target.case)
            .is_some_and(|c| out.at < c.opened_at - VISIT_BEFORE_CASE)
        {
            out.reason = Some(format!(
                "{} not stamped: more than 24 h before the case",
                m.as_str()
            ));
            return Ok(out);
        }
        let had = cases.get(&target.case).and_then(|c| c.at(m));
        let event = CaseEvent::Stamped {
            milestone: m,
            stamp: Stamp {
                at: out.at,
                by: Some(format!("adt:{institution}")),
                source: Source::Adt,
                recorded_at: now,
            },
        };
        match cases.apply(&target.case, event, now) {
            Ok(_) => {
                out.result = if had == Some(out.at) {
                    "unchanged"
                } else {
                    "stamped"
                };
                tracing::info!(case = %target.case, milestone = m.as_str(), result = out.result, "case milestone from ADT");
            }
            Err(CaseStoreError::Store(e)) => return Err(e),
            Err(CaseStoreError::Refused(e)) => {
                tracing::info!(case = %target.case, milestone = m.as_str(), reason = %e, "case milestone from ADT refused");
                out.reason = Some(reason(m, &e));
            }
            Err(e @ CaseStoreError::Unknown(_)) => {
                out.reason = Some(format!("{} not stamped: {e}", m.as_str()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_msa_3() {
        let t = Utc::now();
        for e in [
            CaseError::AlreadyStamped {
                milestone: Milestone::DoorOut,
                at: t,
            },
            CaseError::OutOfOrder {
                earlier: Milestone::TransferDecision,
                earlier_at: t,
                later: Milestone::DoorOut,
                later_at: t,
            },
            CaseError::InFuture { at: t, now: t },
        ] {
            let r = reason(Milestone::DoorOut, &e);
            assert!(r.chars().count() <= 80, "{r}");
            assert!(r.starts_with("door_out not stamped: "), "{r}");
        }
    }
}
