//! Chest-pain cases from STEMI alerts (issue 18, docs/chest-pain.md): every STEMI alert opens
//! a case (`cases.log`) and its machine milestones are stamped from what is stored — the
//! cart's acquisition time (device), huren's receipt, the alert's raising, first delivery to
//! a screen, first escalation and acknowledgement, and the diagnosis (the first of the centre
//! reader's signature and the cardiologist's STEMI decision). The stamps are derived from
//! durable records by [`Gateway::case_from_alert`], which the alert follower runs on every
//! change of an alert and for every alert at start-up: re-deriving writes nothing (an
//! identical re-stamp), so a crash anywhere leaves no stamp missing after the restart.

use chrono::{DateTime, Utc};
use huren_alerting::{Alert, AlertKind, Decision, State};
use huren_chestpain::{CaseEvent, Milestone, Source, Stamp};
use huren_model::{ContentHash, PatientId};
use huren_store::{CaseStore, CaseStoreError, StoreError};

use crate::Gateway;

fn system(at: DateTime<Utc>, by: Option<&str>, source: Source, now: DateTime<Utc>) -> Stamp {
    Stamp {
        at,
        by: by.map(str::to_string),
        source,
        recorded_at: now,
    }
}

impl Gateway {
    /// Opens the case of a STEMI alert if it has none and stamps the machine milestones its
    /// stored records give. Durable when it returns; idempotent. Blocking (fsync).
    ///
    /// Runs on every change of the alert (each delivery to a screen is one), so it reads only
    /// what a missing milestone needs: the alert's own stamps come from the alert in memory,
    /// the report is read while the case lacks it or its ECG times, the reading task (by its
    /// chain's id) while the case has no diagnosis.
    pub fn case_from_alert(&self, a: &Alert) -> Result<(), StoreError> {
        if a.raised.kind != AlertKind::Stemi {
            return Ok(());
        }
        let store = self.ingest_store();
        let Some(pci) = self.config.alerting.group(&a.raised.group).map(|g| g.1) else {
            return Ok(());
        };
        let id = CaseStore::id_of_alert(&a.raised.id.0);
        let cases = store.cases();
        let refused = |e: CaseStoreError| match e {
            CaseStoreError::Store(e) => Err(e),
            _ => Ok(()),
        };
        let now = Utc::now();
        let mut case = cases.get(&id);
        let missing = |case: &Option<huren_chestpain::Case>, m: Milestone| {
            case.as_ref().is_none_or(|c| !c.stamps.contains_key(&m))
        };

        // From the alert itself.
        let mut stamps: Vec<(Milestone, Stamp)> = vec![(
            Milestone::AlertRaised,
            system(a.raised.at, None, Source::System, now),
        )];
        if let Some((who, at)) = a.delivered.iter().min_by_key(|(_, at)| *at) {
            stamps.push((
                Milestone::AlertDelivered,
                system(*at, Some(who), Source::System, now),
            ));
        }
        if let Some(s) = a.steps.iter().find(|s| s.step == 1) {
            stamps.push((
                Milestone::AlertEscalated,
                system(s.at, None, Source::System, now),
            ));
        }
        // The diagnosis: the first of the reader's signature and the cardiologist's STEMI
        // decision.
        let mut diagnosis: Option<(DateTime<Utc>, String)> = None;
        if let State::Acknowledged {
            by, at, decision, ..
        } = &a.state
        {
            stamps.push((
                Milestone::AlertAcknowledged,
                system(*at, Some(by), Source::System, now),
            ));
            if matches!(decision, Decision::StemiTransfer | Decision::NotStemi) {
                diagnosis = Some((*at, by.clone()));
            }
        }

        // From the stored report and its reading task, only while something needs them.
        let needs_report = case.is_none()
            || missing(&case, Milestone::EcgAcquired)
            || missing(&case, Milestone::EcgReceived)
            || missing(&case, Milestone::Diagnosis);
        if needs_report {
            let hash = a.raised.report.parse::<ContentHash>().ok();
            let meta = hash.and_then(|h| store.report_meta(&h).ok().flatten());
            let report = hash.and_then(|h| store.report_shared(&h).ok().flatten());
            if case.is_none() {
                let patient = report
                    .as_ref()
                    .and_then(|r| r.patient.local_key().parse::<PatientId>().ok())
                    .and_then(|id| store.person_key(&id).ok())
                    .unwrap_or_default();
                match cases.open_case(CaseEvent::Opened {
                    id: id.clone(),
                    alert: a.raised.id.0.clone(),
                    institution: a.raised.institution.clone(),
                    pci_institution: pci.to_string(),
                    group: a.raised.group.clone(),
                    patient,
                    ecg_report: a.raised.report.clone(),
                    at: a.raised.at,
                }) {
                    Ok((c, new)) => {
                        if new {
                            tracing::info!(case = %id, alert = %a.raised.id, "chest-pain case opened");
                        }
                        case = Some(c);
                    }
                    Err(e) => return refused(e),
                }
            }
            let acquired = report
                .as_ref()
                .and_then(|r| r.performed_at.as_deref())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            if let Some(t) = acquired {
                stamps.push((
                    Milestone::EcgAcquired,
                    system(t.with_timezone(&Utc), None, Source::Device, now),
                ));
            }
            if let Some(t) = meta
                .as_ref()
                .and_then(|m| DateTime::parse_from_rfc3339(&m.received_at).ok())
            {
                stamps.push((
                    Milestone::EcgReceived,
                    system(t.with_timezone(&Utc), None, Source::System, now),
                ));
            }
            // The reader's signature: the completed reading task of this ECG's chain.
            let signed = meta
                .as_ref()
                .and_then(|m| store.tasks().get(&crate::reading::task_id(&m.chain)))
                .and_then(|t| match t.state {
                    huren_workflow::State::Completed { by, at, .. } => Some((at, by)),
                    _ => None,
                });
            if let Some(s) = signed {
                if diagnosis.as_ref().is_none_or(|d| s.0 < d.0) {
                    diagnosis = Some(s);
                }
            }
        }
        if let Some((at, by)) = diagnosis {
            stamps.push((
                Milestone::Diagnosis,
                system(at, Some(&by), Source::System, now),
            ));
        }

        // What is still missing, made durable together (one fsync). A refusal (a cart clock
        // far ahead) leaves its milestone empty, not the case.
        let todo: Vec<(Milestone, Stamp)> = stamps
            .into_iter()
            .filter(|(m, _)| missing(&case, *m))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        match cases.stamp_all(&id, todo, now) {
            Ok((_, refusals)) => {
                for (milestone, reason) in refusals {
                    tracing::warn!(case = %id, milestone = milestone.as_str(), reason = %reason, "case milestone not stamped");
                }
            }
            Err(e) => refused(e)?,
        }
        Ok(())
    }

    /// Cases for every STEMI alert and their machine stamps (start-up). How many alerts.
    pub fn reconcile_cases(&self) -> Result<usize, StoreError> {
        let alerts = self
            .ingest_store()
            .alerts()
            .select(|a| a.raised.kind == AlertKind::Stemi);
        for a in &alerts {
            self.case_from_alert(a)?;
        }
        Ok(alerts.len())
    }
}
