//! A reading centre as its heads see it (issue 17): the roster (who reads when), edited by a
//! head and recorded durably (`roster.log`) before it takes effect and before the answer,
//! and the centre's workload (tasks signed per hour, time to sign, share within the due
//! time, per reader and per institution). Only the centre's heads (`[[centre]] heads`); every
//! read and edit audited once, refusals too. No patient data in any of it.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use huren_access::{Denial, Principal};
use huren_store::RosterEdit;
use huren_workflow::{CentreId, RosterEntry, Workload};
use serde::Serialize;
use serde_json::json;

use crate::{now_utc, record, Gate, Problem};

/// A centre's roster as its head sees it.
#[derive(Clone, Debug, Serialize)]
pub struct CentreRoster {
    /// The centre's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The hosting institution.
    pub institution: String,
    /// The roster in force.
    pub roster: Vec<RosterEntry>,
    /// Who last edited it (none: as configured).
    pub edited_by: Option<String>,
    /// When.
    pub edited_at: Option<DateTime<Utc>>,
    /// The readers on duty now.
    pub on_duty_now: Vec<String>,
}

/// At most this many entries in one centre's roster.
pub const MAX_ROSTER: usize = 500;

fn not_head() -> Denial {
    Denial {
        status: 403,
        code: "ROLE",
        reason: "only a head of this reading centre".into(),
        wrong_code: false,
    }
}

impl Gate {
    /// The centres `p` heads (for the pages' links; no data).
    pub fn centres_headed(&self, p: &Principal) -> Vec<String> {
        self.wf()
            .centres_headed(&p.id)
            .into_iter()
            .map(|c| c.0.clone())
            .collect()
    }

    async fn head_of(
        &self,
        p: &Principal,
        id: &str,
        rec: &mut huren_audit::AuditRecord,
    ) -> Result<CentreId, Problem> {
        let centre = CentreId(id.to_string());
        rec.detail = json!({ "centre": id });
        let wf = self.wf();
        if !wf.has_centre(&centre) {
            rec.outcome = "not found".into();
            self.audit(rec.clone()).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such centre", id));
        }
        if !wf.is_head(&p.id, &centre) {
            return Err(self.refuse(rec.clone(), &not_head()).await);
        }
        Ok(centre)
    }

    fn roster_view(&self, centre: &CentreId) -> CentreRoster {
        let wf = self.wf();
        let (name, institution) = wf.centre(centre).unwrap_or(("", ""));
        let roster = wf.roster_of(centre);
        let now = now_utc();
        let mut on_duty_now: Vec<String> = roster
            .iter()
            .map(|r| r.reader.clone())
            .filter(|r| wf.on_duty(r, centre, now))
            .collect();
        on_duty_now.sort();
        on_duty_now.dedup();
        let edit = self.store.roster().of(&centre.0);
        CentreRoster {
            id: centre.0.clone(),
            name: name.to_string(),
            institution: institution.to_string(),
            roster,
            edited_by: edit.as_ref().map(|e| e.by.clone()),
            edited_at: edit.map(|e| e.at),
            on_duty_now,
        }
    }

    /// The roster of centre `id`, for one of its heads; audited once.
    pub async fn centre_roster(&self, p: &Principal, id: &str) -> Result<CentreRoster, Problem> {
        let mut rec = record(p, "centre_roster");
        let centre = self.head_of(p, id, &mut rec).await?;
        self.audit(rec).await?;
        Ok(self.roster_view(&centre))
    }

    /// Replaces centre `id`'s roster with `entries` (each naming this centre), for one of its
    /// heads: checked like the configuration (400 naming every problem, nothing changed),
    /// recorded durably, then in force — for the worklist, the acts and the event streams —
    /// and answered. Audited once with the readers named.
    pub async fn edit_roster(
        &self,
        p: &Principal,
        id: &str,
        entries: Vec<RosterEntry>,
    ) -> Result<CentreRoster, Problem> {
        let mut rec = record(p, "roster_edit");
        let centre = self.head_of(p, id, &mut rec).await?;
        let mut readers: Vec<&str> = entries.iter().map(|e| e.reader.as_str()).collect();
        readers.sort();
        readers.dedup();
        rec.detail = json!({ "centre": id, "entries": entries.len(), "readers": readers });
        if entries.len() > MAX_ROSTER {
            rec.outcome = "refused: too many entries".into();
            self.audit(rec).await?;
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad roster",
                format!("at most {MAX_ROSTER} entries"),
            ));
        }
        let shared = self.workflow.clone();
        let store = self.store.clone();
        let edit = RosterEdit {
            centre: id.to_string(),
            entries,
            by: p.id.clone(),
            at: now_utc(),
        };
        // The edit is checked, recorded and swapped in under the workflow's write lock, so two
        // edits (of any centres) apply one after the other and none is lost.
        let done = tokio::task::spawn_blocking(move || {
            let mut w = shared.write().unwrap_or_else(|e| e.into_inner());
            let mut next = None;
            let recorded = store.roster().record(edit, |e| {
                w.with_roster(&centre, &e.entries).map(|n| {
                    next = Some(n);
                })
            })?;
            if let (Ok(()), Some(n)) = (&recorded, next) {
                *w = std::sync::Arc::new(n);
            }
            Ok::<_, huren_store::StoreError>(recorded)
        })
        .await?;
        match done? {
            Ok(()) => {
                self.audit(rec).await?;
                Ok(self.roster_view(&CentreId(id.to_string())))
            }
            Err(e) => {
                rec.outcome = format!("refused: {e}");
                self.audit(rec).await?;
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad roster",
                    e.to_string(),
                ))
            }
        }
    }

    /// Centre `id`'s workload over the tasks signed in `[from, to)`, for one of its heads;
    /// audited once.
    pub async fn centre_workload(
        &self,
        p: &Principal,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Workload, Problem> {
        let mut rec = record(p, "centre_workload");
        let centre = self.head_of(p, id, &mut rec).await?;
        if to <= from {
            rec.outcome = "refused: empty period".into();
            self.audit(rec).await?;
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad period",
                "`to` must be after `from`",
            ));
        }
        let tasks = self.store.tasks().select(|t| t.centre == centre);
        rec.detail = json!({ "centre": id, "from": from, "to": to });
        self.audit(rec).await?;
        Ok(huren_workflow::workload(tasks.iter(), from, to))
    }
}
