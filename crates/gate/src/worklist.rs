//! The reading centre's worklist through the gate (issue 17): a reader sees and acts on the
//! tasks of the centres the roster has them on duty at now (or a task whose fresh claim they
//! hold), nothing else. Seeing a task shows its patient, so the roster is the authorisation:
//! checked here, every read and every act audited once (a refusal too), the patients named
//! by their person keys.

use chrono::{DateTime, Utc};
use huren_access::{Denial, Principal, Role};
use huren_model::{ContentHash, PatientId};
use huren_workflow::{Event, State, Task, TaskId, TransitionError};
use serde::Serialize;
use serde_json::json;

use crate::{now_utc, record, Gate, Problem};
use axum::http::StatusCode;

/// One task as the worklist shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WorklistItem {
    /// Task id.
    pub id: String,
    /// `scheduled`, `in_progress`, `completed`, `cancelled`.
    pub state: &'static str,
    /// `critical`, `urgent`, `routine`.
    pub priority: &'static str,
    /// `ecg` or `imaging`.
    pub kind: &'static str,
    /// The acquiring institution.
    pub institution: String,
    /// The report being read (`blake3:…`).
    pub report: String,
    /// The patient (`INST:LOCAL`), and name when the report has one.
    pub patient: Option<String>,
    /// The patient's name.
    pub patient_name: Option<String>,
    /// The reading centre.
    pub centre: String,
    /// When the task was made.
    pub created_at: DateTime<Utc>,
    /// When it should be signed.
    pub due_at: DateTime<Utc>,
    /// Seconds until `due_at` (negative: overdue).
    pub remaining_secs: i64,
    /// Past its due time and still open.
    pub overdue: bool,
    /// The reader holding a fresh claim.
    pub claimed_by: Option<String>,
}

/// A task as the FHIR `Task` view reads it, with its patient.
#[derive(Clone, Debug)]
pub struct TaskRead {
    /// The task.
    pub task: Task,
    /// The patient (`INST:LOCAL`).
    pub patient: Option<String>,
    /// The patient's name.
    pub patient_name: Option<String>,
}

/// What a reader does to a task.
#[derive(Clone, Debug)]
pub enum TaskAct {
    /// Take it (or renew one's own claim).
    Claim,
    /// Give it back to the list.
    Release,
    /// Withdraw it, with the reason.
    Cancel(String),
}

impl TaskAct {
    fn action(&self) -> &'static str {
        match self {
            TaskAct::Claim => "task_claim",
            TaskAct::Release => "task_release",
            TaskAct::Cancel(_) => "task_cancel",
        }
    }
}

/// A reason as kept: at most 1,000 characters (a reader's explanation, not a document).
fn bounded(reason: &str) -> String {
    reason.trim().chars().take(1000).collect()
}

fn role_denial(reason: &str) -> Denial {
    Denial {
        status: 403,
        code: "ROLE",
        reason: reason.into(),
        wrong_code: false,
    }
}

impl Gate {
    /// The patient of a task's report: its `INST:LOCAL`, name and person key.
    fn task_patient(&self, t: &Task) -> (Option<String>, Option<String>, Option<String>) {
        let Ok(hash) = t.report.parse::<ContentHash>() else {
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

    fn item(&self, t: &Task, now: DateTime<Utc>) -> (WorklistItem, Option<String>) {
        let (patient, patient_name, person) = self.task_patient(t);
        let claimed_by = match &t.state {
            State::InProgress { .. } => t.claim_holder(now).map(str::to_string),
            _ => None,
        };
        (
            WorklistItem {
                id: t.id.0.clone(),
                state: t.state.as_str(),
                priority: t.priority.as_str(),
                kind: t.kind.as_str(),
                institution: t.institution.clone(),
                report: t.current_report().to_string(),
                patient,
                patient_name,
                centre: t.centre.0.clone(),
                created_at: t.created_at,
                due_at: t.due_at,
                remaining_secs: (t.due_at - now).num_seconds(),
                overdue: t.is_overdue(now),
                claimed_by,
            },
            person,
        )
    }

    /// The open tasks of the centres `p` is on duty at, in worklist order (priority, then
    /// waiting time); audited once with the patients shown. Refused (403, audited) when the
    /// roster has `p` on duty nowhere.
    pub async fn worklist(&self, p: &Principal) -> Result<Vec<WorklistItem>, Problem> {
        let now = now_utc();
        let mut rec = record(p, "worklist");
        let centres: Vec<_> = self
            .workflow
            .centres_on_duty(&p.id, now)
            .into_iter()
            .cloned()
            .collect();
        if p.role != Role::Clinician || centres.is_empty() {
            return Err(self
                .refuse(
                    rec,
                    &role_denial("the roster has this principal on duty at no reading centre now"),
                )
                .await);
        }
        let mut tasks = self
            .store
            .tasks()
            .select(|t| t.is_open() && centres.contains(&t.centre));
        tasks.sort_by(huren_workflow::worklist_order);
        let mut items = Vec::with_capacity(tasks.len());
        let mut persons = Vec::new();
        for t in &tasks {
            let (item, person) = self.item(t, now);
            items.push(item);
            if let Some(person) = person {
                if !persons.contains(&person) {
                    persons.push(person);
                }
            }
        }
        rec.detail = json!({
            "centres": centres.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            "tasks": items.len(),
            "patients": persons,
        });
        self.audit(rec).await?;
        Ok(items)
    }

    /// Claims, releases or cancels a task for `p`: allowed when the roster has `p` on duty at
    /// the task's centre (or `p` holds its fresh claim); durable before it returns; audited
    /// once. 404 for no such task, 409 when the task's state refuses it (claimed by another,
    /// already signed, …), 400 for a cancel without a reason.
    pub async fn task_act(
        &self,
        p: &Principal,
        id: &str,
        act: TaskAct,
    ) -> Result<WorklistItem, Problem> {
        let now = now_utc();
        let mut rec = record(p, act.action());
        rec.detail = json!({ "task": id });
        if p.role != Role::Clinician {
            return Err(self
                .refuse(
                    rec,
                    &role_denial("only a reader (a clinician on the roster) acts on reading tasks"),
                )
                .await);
        }
        let tid = TaskId(id.to_string());
        let Some(task) = self.store.tasks().get(&tid) else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id));
        };
        let (_, _, person) = self.task_patient(&task);
        rec.patient = person;
        if !self.workflow.may_act(&p.id, &task, now) {
            return Err(self
                .refuse(
                    rec,
                    &role_denial(
                        "the roster has this principal on duty at another centre or none now",
                    ),
                )
                .await);
        }
        let by = p.id.clone();
        let event = match act {
            TaskAct::Claim => Event::Claimed { by, at: now },
            TaskAct::Release => Event::Released { by, at: now },
            TaskAct::Cancel(reason) => Event::Cancelled {
                by,
                at: now,
                reason: bounded(&reason),
            },
        };
        let store = self.store.clone();
        let applied = tokio::task::spawn_blocking(move || store.tasks().apply(&tid, event)).await?;
        match applied {
            Ok(t) => {
                self.audit(rec).await?;
                Ok(self.item(&t, now).0)
            }
            Err(huren_store::TaskError::Transition(e)) => {
                rec.outcome = format!("refused: {e}");
                self.audit(rec).await?;
                let status = match e {
                    TransitionError::EmptyReason | TransitionError::NoActor => {
                        StatusCode::BAD_REQUEST
                    }
                    _ => StatusCode::CONFLICT,
                };
                Err(Problem::new(status, "task state", e.to_string()))
            }
            Err(huren_store::TaskError::Unknown(id)) => {
                Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id))
            }
            Err(huren_store::TaskError::Store(e)) => Err(e.into()),
        }
    }

    /// Signs a task: the holder of its claim (on the roster) stores the signed version of
    /// its report that `build` makes from the task and the current version, then the task is
    /// completed. Nothing is written when the task refuses it (409) or `build` does (400);
    /// the report is durable before the task's `Signed` event, and that before the answer (a
    /// crash between the two is completed at start-up from the report, which names its task).
    /// Audited once.
    pub async fn sign_task(
        &self,
        p: &Principal,
        id: &str,
        build: impl FnOnce(
            &Task,
            &huren_model::Report,
            ContentHash,
        ) -> Result<huren_store::Ingest, String>,
    ) -> Result<(WorklistItem, ContentHash), Problem> {
        let by = p.id.clone();
        self.new_version(p, id, "task_sign", None, build, move |report, at| {
            Event::Signed {
                by: by.clone(),
                at,
                report,
            }
        })
        .await
    }

    /// Amends a signed task's report: a reader on duty at the task's centre stores the new
    /// version that `build` makes from the task and its current (signed or last amended)
    /// version, then the task records the amendment with its reason (it stays completed).
    /// 409 when the task is not signed, 400 without a reason (nothing written either way);
    /// the report is durable before the `Amended` event, and that before the answer (a crash
    /// between the two is recorded at start-up from the report, which names its task and
    /// reason). Audited once, with the reason.
    pub async fn amend_task(
        &self,
        p: &Principal,
        id: &str,
        reason: &str,
        build: impl FnOnce(
            &Task,
            &huren_model::Report,
            ContentHash,
        ) -> Result<huren_store::Ingest, String>,
    ) -> Result<(WorklistItem, ContentHash), Problem> {
        let by = p.id.clone();
        let reason = bounded(reason);
        self.new_version(
            p,
            id,
            "task_amend",
            Some(reason.clone()),
            build,
            move |report, at| Event::Amended {
                by: by.clone(),
                at,
                report,
                reason: reason.clone(),
            },
        )
        .await
    }

    /// A new report version of a task (signature or amendment): roster check, the event
    /// checked against the task, the version built and committed, the event recorded.
    async fn new_version(
        &self,
        p: &Principal,
        id: &str,
        action: &'static str,
        reason: Option<String>,
        build: impl FnOnce(
            &Task,
            &huren_model::Report,
            ContentHash,
        ) -> Result<huren_store::Ingest, String>,
        event: impl Fn(String, DateTime<Utc>) -> Event,
    ) -> Result<(WorklistItem, ContentHash), Problem> {
        let now = now_utc();
        let mut rec = record(p, action);
        rec.detail = json!({ "task": id });
        if let Some(r) = &reason {
            rec.detail["reason"] = r.as_str().into();
        }
        if p.role != Role::Clinician {
            return Err(self
                .refuse(
                    rec,
                    &role_denial("only a reader (a clinician on the roster) acts on reading tasks"),
                )
                .await);
        }
        let tid = TaskId(id.to_string());
        let Some(task) = self.store.tasks().get(&tid) else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id));
        };
        let (_, _, person) = self.task_patient(&task);
        rec.patient = person;
        if !self.workflow.may_act(&p.id, &task, now) {
            return Err(self
                .refuse(
                    rec,
                    &role_denial(
                        "the roster has this principal on duty at another centre or none now",
                    ),
                )
                .await);
        }
        let refused = |e: String, status: StatusCode, title: &'static str| (e, status, title);
        // The transition is checked before anything is written (apply is pure).
        let checked = task
            .apply(&event(format!("{}-signing", task.current_report()), now))
            .map_err(|e| {
                let status = match e {
                    TransitionError::EmptyReason | TransitionError::NoActor => {
                        StatusCode::BAD_REQUEST
                    }
                    _ => StatusCode::CONFLICT,
                };
                refused(e.to_string(), status, "task state")
            })
            .and_then(|_| {
                let prev_hash = task
                    .current_report()
                    .parse::<ContentHash>()
                    .map_err(|e| refused(e.to_string(), StatusCode::CONFLICT, "task state"))?;
                let prev = self
                    .store
                    .report_shared(&prev_hash)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        refused(
                            format!("report {prev_hash} is not stored"),
                            StatusCode::CONFLICT,
                            "task state",
                        )
                    })?;
                build(&task, &prev, prev_hash)
                    .map_err(|e| refused(e, StatusCode::BAD_REQUEST, "bad signature"))
            });
        let ingest = match checked {
            Ok(i) => i,
            Err((detail, status, title)) => {
                rec.outcome = format!("refused: {detail}");
                self.audit(rec).await?;
                return Err(Problem::new(status, title, detail));
            }
        };
        let committed = self.store.commit(ingest).await?;
        let Some(signed) = committed.reports.first().map(|r| r.report) else {
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not stored",
                "the signed report was not stored",
            ));
        };
        let store = self.store.clone();
        let ev = event(signed.to_string(), now);
        let tid2 = tid.clone();
        let applied = tokio::task::spawn_blocking(move || store.tasks().apply(&tid2, ev)).await?;
        match applied {
            Ok(t) => {
                rec.detail["report"] = signed.to_string().into();
                self.audit(rec).await?;
                Ok((self.item(&t, now).0, signed))
            }
            Err(huren_store::TaskError::Transition(e)) => {
                rec.outcome = format!("refused: {e}");
                self.audit(rec).await?;
                Err(Problem::new(
                    StatusCode::CONFLICT,
                    "task state",
                    e.to_string(),
                ))
            }
            Err(huren_store::TaskError::Unknown(id)) => {
                Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id))
            }
            Err(huren_store::TaskError::Store(e)) => Err(e.into()),
        }
    }

    /// Reading tasks for the FHIR `Task` view, through the same authorisation as the worklist:
    /// a clinician on duty at a reading centre now; with `id` that task (allowed when they may
    /// act on it: on duty at its centre or holding its claim; 404 unknown), else every task
    /// (open or not) of the centres they are on duty at, filtered by `owner` (the claim's
    /// holder or the signer) and FHIR `status` (`requested`, `in-progress`, `completed`,
    /// `cancelled`), in worklist order. Audited once (`fhir_task`, the tasks and patients).
    pub async fn fhir_tasks(
        &self,
        p: &Principal,
        id: Option<&str>,
        owner: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<TaskRead>, Problem> {
        let now = now_utc();
        let mut rec = record(p, "fhir_task");
        rec.detail = json!({ "task": id, "owner": owner, "status": status });
        let centres: Vec<_> = self
            .workflow
            .centres_on_duty(&p.id, now)
            .into_iter()
            .cloned()
            .collect();
        let tasks = match id {
            Some(id) => {
                let task = if p.role == Role::Clinician {
                    self.store.tasks().get(&TaskId(id.to_string()))
                } else {
                    None
                };
                match task {
                    Some(t) if self.workflow.may_act(&p.id, &t, now) => vec![t],
                    Some(t) => {
                        rec.patient = self.task_patient(&t).2;
                        return Err(self
                            .refuse(
                                rec,
                                &role_denial(
                                    "the roster has this principal on duty at another centre or none now",
                                ),
                            )
                            .await);
                    }
                    None if p.role != Role::Clinician => {
                        return Err(self
                            .refuse(
                                rec,
                                &role_denial(
                                    "only a reader (a clinician on the roster) reads reading tasks",
                                ),
                            )
                            .await)
                    }
                    None => {
                        rec.outcome = "not found".into();
                        self.audit(rec).await?;
                        return Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id));
                    }
                }
            }
            None => {
                if p.role != Role::Clinician || centres.is_empty() {
                    return Err(self
                        .refuse(
                            rec,
                            &role_denial(
                                "the roster has this principal on duty at no reading centre now",
                            ),
                        )
                        .await);
                }
                let mut v = self.store.tasks().select(|t| {
                    centres.contains(&t.centre)
                        && owner.is_none_or(|o| t.owner() == Some(o))
                        && status.is_none_or(|s| t.state.fhir_status() == s)
                });
                v.sort_by(huren_workflow::worklist_order);
                v
            }
        };
        let mut out = Vec::with_capacity(tasks.len());
        let mut persons = Vec::new();
        for t in tasks {
            let (patient, patient_name, person) = self.task_patient(&t);
            if let Some(person) = person {
                if !persons.contains(&person) {
                    persons.push(person);
                }
            }
            out.push(TaskRead {
                task: t,
                patient,
                patient_name,
            });
        }
        rec.detail["tasks"] = out.len().into();
        if id.is_some() {
            rec.patient = persons.first().cloned();
        } else {
            rec.detail["patients"] = json!(persons);
        }
        self.audit(rec).await?;
        Ok(out)
    }
}
