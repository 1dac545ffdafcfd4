//! Alerts through the gate (issue 18): who sees an alert and may answer it is decided here —
//! its recipients so far (the tiers its escalation steps notified: the group's duty doctors,
//! then backups, then heads) and the clinicians of the institution whose report raised it
//! (the sender's view). An alert shows its patient, so every list and every act is audited
//! once, naming the patients; refusals too.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use huren_access::{Denial, Principal, Role};
use huren_alerting::{Alert, AlertId, Decision, Event, State, Tier};
use huren_model::{ContentHash, PatientId};
use serde::Serialize;
use serde_json::json;

use crate::{now_utc, record, Gate, Problem};

/// One alert as a list or an act answers it.
#[derive(Clone, Debug, Serialize)]
pub struct AlertItem {
    /// Alert id.
    pub id: String,
    /// `stemi` or `lab_critical`.
    pub kind: &'static str,
    /// `open`, `acknowledged`, `cancelled`.
    pub state: &'static str,
    /// The sending institution.
    pub institution: String,
    /// Its name (configured), else the code.
    pub institution_name: String,
    /// Its phone, to call back.
    pub institution_phone: Option<String>,
    /// The recipient group, its name, its hospital and phone.
    pub group: String,
    /// The group's name.
    pub group_name: String,
    /// The group's hospital.
    pub group_institution: String,
    /// The group's phone.
    pub group_phone: Option<String>,
    /// The report that raised it.
    pub report: String,
    /// What it is about (the ECG statement, the critical values).
    pub summary: String,
    /// The patient (`INST:LOCAL`) and name.
    pub patient: Option<String>,
    /// The patient's name.
    pub patient_name: Option<String>,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// The last escalation step and when it was taken.
    pub step: u32,
    /// When.
    pub step_at: DateTime<Utc>,
    /// The tiers notified so far.
    pub tiers: Vec<Tier>,
    /// When the next step falls due (open alerts).
    pub next_step_at: Option<DateTime<Utc>>,
    /// The acknowledgement: who, when, decision, note.
    pub acknowledged: Option<serde_json::Value>,
    /// The cancellation: who, when, reason.
    pub cancelled: Option<serde_json::Value>,
    /// Screens it reached: principal and when.
    pub delivered: Vec<(String, DateTime<Utc>)>,
    /// Whether the caller may acknowledge it (a recipient, open).
    pub may_acknowledge: bool,
}

/// What a principal does to an alert.
#[derive(Clone, Debug)]
pub enum AlertAct {
    /// Acknowledge with a decision and a note.
    Acknowledge {
        /// The decision.
        decision: Decision,
        /// The note.
        note: String,
    },
    /// Cancel with a reason.
    Cancel(String),
    /// Opened it (the page was shown).
    Read,
}

/// A role refusal (403) with its reason.
pub(crate) fn denial(reason: &str) -> Denial {
    Denial {
        status: 403,
        code: "ROLE",
        reason: reason.into(),
        wrong_code: false,
    }
}

impl Gate {
    /// Whether `p` sees alert `a` at `now`: a recipient so far, or a clinician of the sending
    /// institution.
    pub fn alert_visible(&self, p: &Principal, a: &Alert, now: DateTime<Utc>) -> bool {
        p.role == Role::Clinician
            && (p.institution == a.raised.institution || self.alerting.is_recipient(&p.id, a, now))
    }

    fn alert_patient(&self, a: &Alert) -> (Option<String>, Option<String>, Option<String>) {
        let Ok(hash) = a.raised.report.parse::<ContentHash>() else {
            return (None, None, None);
        };
        let Ok(Some(r)) = self.store.report_shared(&hash) else {
            return (None, None, None);
        };
        let local = r.patient.local_key();
        let person = local
            .parse::<PatientId>()
            .ok()
            .and_then(|id| self.store.person_key(&id).ok());
        (Some(local), r.patient.name.clone(), person)
    }

    fn alert_item(
        &self,
        p: &Principal,
        a: &Alert,
        now: DateTime<Utc>,
    ) -> (AlertItem, Option<String>) {
        let (patient, patient_name, person) = self.alert_patient(a);
        let (group_name, group_institution, group_phone) = self
            .alerting
            .group(&a.raised.group)
            .map(|(n, i, ph)| (n.to_string(), i.to_string(), ph.map(str::to_string)))
            .unwrap_or_default();
        let step = a.step();
        let (acknowledged, cancelled) = match &a.state {
            State::Open => (None, None),
            State::Acknowledged {
                by,
                at,
                decision,
                note,
            } => (
                Some(json!({"by": by, "at": at, "decision": decision.as_str(), "note": note})),
                None,
            ),
            State::Cancelled { by, at, reason } => {
                (None, Some(json!({"by": by, "at": at, "reason": reason})))
            }
        };
        (
            AlertItem {
                id: a.raised.id.0.clone(),
                kind: a.raised.kind.as_str(),
                state: a.state.as_str(),
                institution: a.raised.institution.clone(),
                institution_name: self
                    .institutions
                    .get(&a.raised.institution)
                    .map_or_else(|| a.raised.institution.clone(), |i| i.0.clone()),
                institution_phone: self
                    .institutions
                    .get(&a.raised.institution)
                    .and_then(|i| i.1.clone()),
                group: a.raised.group.clone(),
                group_name,
                group_institution,
                group_phone,
                report: a.raised.report.clone(),
                summary: a.raised.summary.clone(),
                patient,
                patient_name,
                raised_at: a.raised.at,
                step: step.step,
                step_at: step.at,
                tiers: a.tiers(),
                next_step_at: self.alerting.ladder(&a.raised.group).next(a).map(|s| s.at),
                acknowledged,
                cancelled,
                delivered: a.delivered.clone(),
                may_acknowledge: a.is_open() && self.alerting.is_recipient(&p.id, a, now),
            },
            person,
        )
    }

    /// The alerts `p` sees (open ones only when `open_only`), newest first (at most 500);
    /// audited once with the patients shown. Clinicians only.
    pub async fn alerts(&self, p: &Principal, open_only: bool) -> Result<Vec<AlertItem>, Problem> {
        let now = now_utc();
        let mut rec = record(p, "alerts");
        if p.role != Role::Clinician {
            return Err(self
                .refuse(rec, &denial("alerts are for the clinicians they concern"))
                .await);
        }
        let mut alerts = self
            .store
            .alerts()
            .select(|a| (!open_only || a.is_open()) && self.alert_visible(p, a, now));
        alerts.sort_by(|a, b| {
            b.raised
                .at
                .cmp(&a.raised.at)
                .then(a.raised.id.cmp(&b.raised.id))
        });
        alerts.truncate(500);
        let mut items = Vec::with_capacity(alerts.len());
        let mut persons = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for a in &alerts {
            let (item, person) = self.alert_item(p, a, now);
            items.push(item);
            if let Some(person) = person {
                if seen.insert(person.clone()) {
                    persons.push(person);
                }
            }
        }
        rec.detail = json!({ "open_only": open_only, "alerts": items.len(), "patients": persons });
        self.audit(rec).await?;
        Ok(items)
    }

    /// Acknowledges, cancels or marks read an alert for `p`: acknowledging needs a recipient
    /// (409 when closed, 400 for a decision that does not fit or a missing note), cancelling
    /// a recipient or a clinician of the sending institution (with a reason), reading anyone
    /// who sees it. Durable before it returns; audited once.
    pub async fn alert_act(
        &self,
        p: &Principal,
        id: &str,
        act: AlertAct,
    ) -> Result<AlertItem, Problem> {
        let now = now_utc();
        let action = match act {
            AlertAct::Acknowledge { .. } => "alert_ack",
            AlertAct::Cancel(_) => "alert_cancel",
            AlertAct::Read => "alert_read",
        };
        let mut rec = record(p, action);
        rec.detail = json!({ "alert": id });
        if p.role != Role::Clinician {
            return Err(self
                .refuse(rec, &denial("alerts are answered by clinicians"))
                .await);
        }
        let aid = AlertId(id.to_string());
        let Some(a) = self.store.alerts().get(&aid) else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such alert", id));
        };
        let (_, _, person) = self.alert_patient(&a);
        rec.patient = person;
        let recipient = self.alerting.is_recipient(&p.id, &a, now);
        let allowed = match act {
            AlertAct::Acknowledge { .. } => p.role == Role::Clinician && recipient,
            AlertAct::Cancel(_) | AlertAct::Read => self.alert_visible(p, &a, now),
        };
        if !allowed {
            return Err(self
                .refuse(
                    rec,
                    &denial("not a recipient of this alert (the group's duty, backup or head as it escalated)"),
                )
                .await);
        }
        let by = p.id.clone();
        let event = match act {
            AlertAct::Acknowledge { decision, note } => {
                rec.detail = json!({ "alert": id, "decision": decision.as_str() });
                Event::Acknowledged {
                    by,
                    at: now,
                    decision,
                    note: note.trim().chars().take(1000).collect(),
                }
            }
            AlertAct::Cancel(reason) => Event::Cancelled {
                by,
                at: now,
                reason: reason.trim().chars().take(1000).collect(),
            },
            AlertAct::Read => Event::Read { by, at: now },
        };
        let store = self.store.clone();
        let applied =
            tokio::task::spawn_blocking(move || store.alerts().apply(&aid, event)).await?;
        match applied {
            Ok(a) => {
                // An answered critical value changes the patient's verdicts (it closes
                // CRITICAL_VALUE_OPEN): their cached answers are stale.
                if let Some(person) = &rec.patient {
                    self.store.bump_person(person);
                }
                self.audit(rec).await?;
                Ok(self.alert_item(p, &a, now).0)
            }
            Err(huren_store::AlertStoreError::Refused(e)) => {
                rec.outcome = format!("refused: {e}");
                self.audit(rec).await?;
                let status = match e {
                    huren_alerting::AlertError::Closed(_) => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(Problem::new(status, "alert state", e.to_string()))
            }
            Err(huren_store::AlertStoreError::Unknown(id)) => {
                Err(Problem::new(StatusCode::NOT_FOUND, "no such alert", id))
            }
            Err(huren_store::AlertStoreError::Store(e)) => Err(e.into()),
        }
    }
}

impl Gate {
    /// The report that raised alert `id` (its ECG trace), for one who sees the alert: the
    /// alert is the basis. Audited once.
    pub async fn alert_report(
        &self,
        p: &Principal,
        id: &str,
        action: &'static str,
    ) -> Result<crate::ReportRead, Problem> {
        let now = now_utc();
        let mut rec = record(p, action);
        rec.detail = json!({ "alert": id, "basis": "alert" });
        let a = self.store.alerts().get(&AlertId(id.to_string()));
        let Some(a) = a.filter(|a| self.alert_visible(p, a, now)) else {
            return Err(self
                .refuse(rec, &denial("not an alert this principal sees"))
                .await);
        };
        let (_, _, person) = self.alert_patient(&a);
        rec.patient = person;
        let meta = a
            .raised
            .report
            .parse::<ContentHash>()
            .ok()
            .and_then(|h| self.store.report_meta(&h).ok().flatten());
        let Some(meta) = meta else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "no such report",
                &a.raised.report,
            ));
        };
        rec.returned = vec![meta.hash.to_string()];
        self.audit(rec).await?;
        Ok(crate::ReportRead {
            meta,
            store: self.store.clone(),
        })
    }
}

impl Gate {
    /// Whether the critical value of a report chain is closed: its alert acknowledged
    /// (`Acknowledged`), raised and waiting (`Open`), or no alert / cancelled (`Unknown`).
    pub fn critical_closure(&self, chain: &str) -> huren_recognition::Closure {
        use huren_recognition::Closure;
        match self
            .store
            .alerts()
            .get(&huren_store::AlertStore::id_of_chain(chain))
            .map(|a| a.state)
        {
            Some(State::Acknowledged { .. }) => Closure::Acknowledged,
            Some(State::Open) => Closure::Open,
            _ => Closure::Unknown,
        }
    }
}
