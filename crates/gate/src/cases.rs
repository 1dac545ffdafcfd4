//! Chest-pain cases and green-channel referrals through the gate (issue 18): who sees a case
//! and may stamp it or refer the patient is decided here. A case is seen by the clinicians of
//! the sending institution, by its alert's recipients so far (the PCI group's duty doctors,
//! backups and heads as it escalated), and — once a referral is active — by the receiving
//! hospital's clinicians (the incoming patient). Sending-side milestones (onset, first
//! medical contact, door-in, decision to transfer, door-out) are stamped by the sending
//! institution's clinicians or the alert's recipients; receiving-side ones (cath-lab
//! activation, arrival) by the receiving hospital's clinicians or the recipients. A case
//! shows its patient: every view and act is audited once, naming the patient; refusals too.
//! The KPIs (aggregates, no patient) are for heads of department (their groups' cases) and
//! the health commission (all).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use huren_access::{Principal, Role};
use huren_alerting::AlertId;
use huren_chestpain::{Case, CaseEvent, Kpi, Milestone, Referral, Source, Stamp};
use huren_store::{CaseStore, CaseStoreError};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{now_utc, record, Gate, Problem};

/// Most cases a list answers.
pub const MAX_CASES: usize = 200;
/// How far back a referral's attached results reach.
pub const ATTACH_WINDOW_HOURS: i64 = 72;
/// Most results attached to a referral besides the ECG.
pub const MAX_ATTACHED: usize = 20;

use crate::alerts::denial;

/// Which cases a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Every case the caller sees.
    All,
    /// Patients coming to the caller's hospital: an active referral to it.
    Incoming,
    /// Patients of the caller's institution.
    Outgoing,
}

/// One case as the API answers it.
#[derive(Clone, Debug, Serialize)]
pub struct CaseItem {
    /// Case id (`c-…`), also the referral's id.
    pub id: String,
    /// The STEMI alert it was opened from.
    pub alert: String,
    /// The alert's state and decision.
    pub alert_state: Option<&'static str>,
    /// The decision, when acknowledged.
    pub decision: Option<&'static str>,
    /// The sending institution.
    pub institution: String,
    /// The PCI hospital.
    pub pci_institution: String,
    /// The recipient group.
    pub group: String,
    /// The patient (`INST:LOCAL`) and name, from the ECG.
    pub patient: Option<String>,
    /// The patient's name.
    pub patient_name: Option<String>,
    /// The ECG report.
    pub ecg_report: String,
    /// When the case opened (the alert).
    pub opened_at: DateTime<Utc>,
    /// Each stamped milestone: `{at, by, source, recorded_at}`.
    pub stamps: serde_json::Map<String, Value>,
    /// The active referral.
    pub referral: Option<Referral>,
    /// Withdrawn referrals.
    pub cancelled_referrals: Vec<Value>,
    /// Each KPI's interval in seconds, where both ends are stamped.
    pub intervals: serde_json::Map<String, Value>,
    /// The milestones the caller may stamp now (not stamped yet).
    pub may_stamp: Vec<&'static str>,
}

/// Whether a milestone is stamped on the sending side (else the receiving hospital's).
fn sending_side(m: Milestone) -> bool {
    matches!(
        m,
        Milestone::SymptomOnset
            | Milestone::FirstMedicalContact
            | Milestone::DoorIn
            | Milestone::TransferDecision
            | Milestone::DoorOut
    )
}

impl Gate {
    fn case_recipient(&self, p: &Principal, c: &Case, now: DateTime<Utc>) -> bool {
        self.store
            .alerts()
            .get(&AlertId(c.alert.clone()))
            .is_some_and(|a| self.alerting.is_recipient(&p.id, &a, now))
    }

    /// Whether `p` sees case `c`.
    pub fn case_visible(&self, p: &Principal, c: &Case, now: DateTime<Utc>) -> bool {
        p.role == Role::Clinician
            && (p.institution == c.institution
                || (c.referral.is_some() && p.institution == c.pci_institution)
                || self.case_recipient(p, c, now))
    }

    fn may_stamp(&self, p: &Principal, c: &Case, m: Milestone, now: DateTime<Utc>) -> bool {
        m.entered()
            && p.role == Role::Clinician
            && (self.case_recipient(p, c, now)
                || if sending_side(m) {
                    p.institution == c.institution
                } else {
                    p.institution == c.pci_institution
                })
    }

    fn case_patient(&self, c: &Case) -> (Option<String>, Option<String>) {
        let r = c
            .ecg_report
            .parse::<huren_model::ContentHash>()
            .ok()
            .and_then(|h| self.store.report_shared(&h).ok().flatten());
        match r {
            Some(r) => (Some(r.patient.local_key()), r.patient.name.clone()),
            None => (None, None),
        }
    }

    fn case_item(&self, p: &Principal, c: &Case, now: DateTime<Utc>) -> CaseItem {
        let (patient, patient_name) = self.case_patient(c);
        let alert = self.store.alerts().get(&AlertId(c.alert.clone()));
        let decision = alert.as_ref().and_then(|a| match &a.state {
            huren_alerting::State::Acknowledged { decision, .. } => Some(decision.as_str()),
            _ => None,
        });
        let stamps = c
            .stamps
            .iter()
            .map(|(m, s)| {
                (
                    m.as_str().to_string(),
                    json!({"at": s.at, "by": s.by, "source": s.source.as_str(), "recorded_at": s.recorded_at}),
                )
            })
            .collect();
        let intervals = Kpi::ALL
            .iter()
            .filter_map(|k| match k.duration(c) {
                Some(Ok(d)) => Some((k.as_str().to_string(), json!(d.num_seconds()))),
                _ => None,
            })
            .collect();
        let may_stamp = Milestone::ALL
            .iter()
            .copied()
            .filter(|m| !c.stamps.contains_key(m) && self.may_stamp(p, c, *m, now))
            .map(Milestone::as_str)
            .collect();
        CaseItem {
            id: c.id.clone(),
            alert: c.alert.clone(),
            alert_state: alert.as_ref().map(|a| a.state.as_str()),
            decision,
            institution: c.institution.clone(),
            pci_institution: c.pci_institution.clone(),
            group: c.group.clone(),
            patient,
            patient_name,
            ecg_report: c.ecg_report.clone(),
            opened_at: c.opened_at,
            stamps,
            referral: c.referral.clone(),
            cancelled_referrals: c
                .cancelled_referrals
                .iter()
                .map(
                    |r| json!({"referral": r.referral, "by": r.by, "at": r.at, "reason": r.reason}),
                )
                .collect(),
            intervals,
            may_stamp,
        }
    }

    /// The cases `p` sees in `direction`, newest first (at most [`MAX_CASES`]); audited once
    /// with the patients shown. Clinicians only.
    pub async fn cases(
        &self,
        p: &Principal,
        direction: Direction,
    ) -> Result<Vec<CaseItem>, Problem> {
        let now = now_utc();
        let mut rec = record(p, "referrals");
        if p.role != Role::Clinician {
            return Err(self
                .refuse(
                    rec,
                    &denial("chest-pain cases are for the clinicians they concern"),
                )
                .await);
        }
        let mut cases = self.store.cases().select(|c| {
            self.case_visible(p, c, now)
                && match direction {
                    Direction::All => true,
                    Direction::Incoming => {
                        c.referral.is_some() && p.institution == c.pci_institution
                    }
                    Direction::Outgoing => p.institution == c.institution,
                }
        });
        cases.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then(a.id.cmp(&b.id)));
        cases.truncate(MAX_CASES);
        let mut persons: Vec<&str> = cases
            .iter()
            .map(|c| c.patient.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        persons.sort();
        persons.dedup();
        rec.detail = json!({"direction": format!("{direction:?}").to_lowercase(), "cases": cases.len(), "patients": persons});
        self.audit(rec).await?;
        Ok(cases.iter().map(|c| self.case_item(p, c, now)).collect())
    }

    /// One case, for one who sees it; audited once.
    pub async fn case(&self, p: &Principal, id: &str) -> Result<CaseItem, Problem> {
        let now = now_utc();
        let mut rec = record(p, "referral_view");
        rec.detail = json!({ "case": id });
        let c = self.store.cases().get(id);
        let Some(c) = c.filter(|c| self.case_visible(p, c, now)) else {
            return Err(self
                .refuse(rec, &denial("not a case this principal sees"))
                .await);
        };
        rec.patient = Some(c.patient.clone()).filter(|s| !s.is_empty());
        self.audit(rec).await?;
        Ok(self.case_item(p, &c, now))
    }

    /// Refers the patient of STEMI alert `alert` to the PCI hospital (or `to`): the ECG and
    /// the person's results of the last [`ATTACH_WINDOW_HOURS`] attached. For the alert's
    /// recipients and the sending institution's clinicians. Durable before it returns.
    pub async fn refer(
        &self,
        p: &Principal,
        alert: &str,
        reason: &str,
        to: Option<&str>,
        expected_arrival: Option<DateTime<Utc>>,
    ) -> Result<CaseItem, Problem> {
        let now = now_utc();
        let id = CaseStore::id_of_alert(alert);
        let mut rec = record(p, "referral_new");
        rec.detail = json!({ "alert": alert, "case": id });
        let c = self.store.cases().get(&id);
        let Some(c) = c.filter(|c| {
            p.role == Role::Clinician
                && (p.institution == c.institution || self.case_recipient(p, c, now))
        }) else {
            return Err(self
                .refuse(
                    rec,
                    &denial("a referral is made by the sending institution's clinicians or the alert's recipients, from a STEMI alert"),
                )
                .await);
        };
        rec.patient = Some(c.patient.clone()).filter(|s| !s.is_empty());
        let mut attachments = vec![c.ecg_report.clone()];
        if !c.patient.is_empty() {
            let since = (now - chrono::Duration::hours(ATTACH_WINDOW_HOURS)).timestamp_millis();
            let recent = self.store.person_reports(&c.patient)?;
            attachments.extend(
                recent
                    .into_iter()
                    .filter(|m| m.time_ms.is_some_and(|t| t >= since))
                    .map(|m| m.hash.to_string())
                    .filter(|h| *h != c.ecg_report)
                    .take(MAX_ATTACHED),
            );
        }
        let event = CaseEvent::Referred(Referral {
            by: p.id.clone(),
            at: now,
            to_institution: to.unwrap_or(&c.pci_institution).trim().to_string(),
            reason: reason.trim().chars().take(1000).collect(),
            expected_arrival,
            attachments,
        });
        self.case_event(p, rec, &id, event, now).await
    }

    /// Stamps an entered milestone of case `id` at `at` (default now) — one click. Durable
    /// before it returns; a milestone is stamped once (409 after), in pathway order (400).
    pub async fn stamp_case(
        &self,
        p: &Principal,
        id: &str,
        milestone: Milestone,
        at: Option<DateTime<Utc>>,
    ) -> Result<CaseItem, Problem> {
        let now = now_utc();
        let mut rec = record(p, "referral_stamp");
        rec.detail = json!({ "case": id, "milestone": milestone.as_str() });
        let c = self.store.cases().get(id);
        let Some(c) = c.filter(|c| self.may_stamp(p, c, milestone, now)) else {
            return Err(self
                .refuse(
                    rec,
                    &denial("this milestone is stamped by the other side's clinicians or the alert's recipients"),
                )
                .await);
        };
        rec.patient = Some(c.patient.clone()).filter(|s| !s.is_empty());
        let event = CaseEvent::Stamped {
            milestone,
            stamp: Stamp {
                at: at.unwrap_or(now),
                by: Some(p.id.clone()),
                source: Source::Entered,
                recorded_at: now,
            },
        };
        self.case_event(p, rec, id, event, now).await
    }

    /// Withdraws the active referral of case `id` with a reason.
    pub async fn cancel_referral(
        &self,
        p: &Principal,
        id: &str,
        reason: &str,
    ) -> Result<CaseItem, Problem> {
        let now = now_utc();
        let mut rec = record(p, "referral_cancel");
        rec.detail = json!({ "case": id });
        let c = self.store.cases().get(id);
        let Some(c) = c.filter(|c| {
            p.role == Role::Clinician
                && (p.institution == c.institution || self.case_recipient(p, c, now))
        }) else {
            return Err(self
                .refuse(rec, &denial("not a referral this principal may withdraw"))
                .await);
        };
        rec.patient = Some(c.patient.clone()).filter(|s| !s.is_empty());
        let event = CaseEvent::ReferralCancelled {
            by: p.id.clone(),
            at: now,
            reason: reason.trim().chars().take(1000).collect(),
        };
        self.case_event(p, rec, id, event, now).await
    }

    async fn case_event(
        &self,
        p: &Principal,
        mut rec: huren_audit::AuditRecord,
        id: &str,
        event: CaseEvent,
        now: DateTime<Utc>,
    ) -> Result<CaseItem, Problem> {
        let store = self.store.clone();
        let cid = id.to_string();
        let applied =
            tokio::task::spawn_blocking(move || store.cases().apply(&cid, event, now)).await?;
        match applied {
            Ok(c) => {
                self.audit(rec).await?;
                Ok(self.case_item(p, &c, now))
            }
            Err(CaseStoreError::Refused(e)) => {
                rec.outcome = format!("refused: {e}");
                self.audit(rec).await?;
                let status = match e {
                    huren_chestpain::CaseError::AlreadyStamped { .. }
                    | huren_chestpain::CaseError::ReferralActive => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(Problem::new(status, "case state", e.to_string()))
            }
            Err(CaseStoreError::Unknown(id)) => {
                Err(Problem::new(StatusCode::NOT_FOUND, "no such case", id))
            }
            Err(CaseStoreError::Store(e)) => Err(e.into()),
        }
    }

    /// Whether `p` may see chest-pain KPIs (the commission, a head of a group).
    pub fn sees_kpis(&self, p: &Principal) -> bool {
        p.role == Role::Commission
            || (p.role == Role::Clinician && !self.alerting.headed_by(&p.id).is_empty())
    }

    /// The cases whose KPIs `p` may see: every case for the health commission, the cases of
    /// the groups a head of department heads; anyone else is refused (audited). The caller
    /// audits what it answers.
    pub async fn kpi_cases(
        &self,
        p: &Principal,
        action: &'static str,
    ) -> Result<Vec<Case>, Problem> {
        let headed = self.alerting.headed_by(&p.id);
        match p.role {
            Role::Commission => Ok(self.store.cases().select(|_| true)),
            Role::Clinician if !headed.is_empty() => {
                Ok(self.store.cases().select(|c| headed.contains(&c.group)))
            }
            _ => Err(self
                .refuse(
                    record(p, action),
                    &denial(
                        "the chest-pain KPIs are for heads of department and the health commission",
                    ),
                )
                .await),
        }
    }
}
