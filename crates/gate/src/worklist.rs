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

use crate::{now_utc, record, Gate, Problem, ReportRead};
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

/// Why a non-clinician is refused an act on a task, and a read of one.
const ACTS: &str = "only a reader (a clinician on the roster) acts on reading tasks";
const READS: &str = "only a reader (a clinician on the roster) reads tasks";

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

    /// The first `limit` open tasks (at most [`MAX_WORKLIST`]) of the centres `p` is on duty
    /// at, in worklist order (priority, then waiting time), and how many are open in all;
    /// audited once with the patients shown. Refused (403, audited) when the roster has `p`
    /// on duty nowhere.
    pub async fn worklist(
        &self,
        p: &Principal,
        limit: usize,
    ) -> Result<(Vec<WorklistItem>, usize), Problem> {
        let now = now_utc();
        let mut rec = record(p, "worklist");
        let centres: Vec<_> = self
            .wf()
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
        let total = tasks.len();
        tasks.sort_by(huren_workflow::worklist_order);
        tasks.truncate(limit.clamp(1, MAX_WORKLIST));
        let mut items = Vec::with_capacity(tasks.len());
        let mut persons = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in &tasks {
            let (item, person) = self.item(t, now);
            items.push(item);
            if let Some(person) = person {
                if seen.insert(person.clone()) {
                    persons.push(person);
                }
            }
        }
        rec.detail = json!({
            "centres": centres.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            "tasks": items.len(),
            "open": total,
            "patients": persons,
        });
        self.audit(rec).await?;
        Ok((items, total))
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
        self.acting_on(p, id, now, ACTS, &mut rec).await?;
        let tid = TaskId(id.to_string());
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
        let (task, _) = self.acting_on(p, id, now, ACTS, &mut rec).await?;
        let tid = TaskId(id.to_string());
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
            .wf()
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
                    Some(t) if self.wf().may_act(&p.id, &t, now) => vec![t],
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

/// The reading centres and roster, shared by the gate and its event streams and swapped whole
/// on a roster edit.
pub type SharedWorkflow =
    std::sync::Arc<std::sync::RwLock<std::sync::Arc<huren_workflow::Workflow>>>;

/// A task change as the event stream carries it: which task, its state and where it is —
/// no patient data (a page that wants the patient fetches the audited worklist).
#[derive(Clone, Debug, Serialize)]
pub struct TaskChange {
    /// Task id.
    pub id: String,
    /// `scheduled`, `in_progress`, `completed`, `cancelled`.
    pub state: &'static str,
    /// `critical`, `urgent`, `routine`.
    pub priority: &'static str,
    /// `ecg` or `imaging`.
    pub kind: &'static str,
    /// The reading centre.
    pub centre: String,
    /// The acquiring institution.
    pub institution: String,
    /// The reader holding a fresh claim.
    pub claimed_by: Option<String>,
    /// When it should be signed.
    pub due_at: DateTime<Utc>,
}

/// Whom an event stream is for: decides, at each change, whether the stream carries it (the
/// roster and the duty rosters are read at the time of the change, so a shift change takes
/// effect at once).
#[derive(Clone)]
pub struct EventScope {
    reader: String,
    institution: String,
    workflow: SharedWorkflow,
    alerting: std::sync::Arc<huren_alerting::Alerting>,
    store: huren_store::Store,
}

/// Where an event stream stands: the last task change and the last alert change it passed.
/// Written as the event id `T.A` (a bare `T`, from before alerts, reads as `T` and the
/// current alert sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The task feed's sequence.
    pub tasks: u64,
    /// The alert feed's sequence.
    pub alerts: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.tasks, self.alerts)
    }
}

/// An alert change as the event stream carries it: which alert, its state and step — no
/// patient data and no clinical content.
#[derive(Clone, Debug, Serialize)]
pub struct AlertChange {
    /// Alert id.
    pub id: String,
    /// `stemi` or `lab_critical`.
    pub kind: &'static str,
    /// `open`, `acknowledged`, `cancelled`.
    pub state: &'static str,
    /// The sending institution.
    pub institution: String,
    /// The recipient group.
    pub group: String,
    /// The last escalation step.
    pub step: u32,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
}

/// One change a stream carries.
pub enum Change {
    /// A reading task's.
    Task(TaskChange),
    /// An alert's; `recipient`: the stream's owner is among its recipients (the stream
    /// stamps its delivery).
    Alert(AlertChange, bool),
}

/// What an event stream reads next.
pub enum Changes {
    /// The changes after the given cursor this stream carries, each with the cursor after
    /// it, and the cursor they were read up to.
    Some(Vec<(Cursor, Change)>, Cursor),
    /// The changes after the given cursor are no longer kept (or it is unknown): start over
    /// from this cursor.
    Reset(Cursor),
}

impl EventScope {
    /// Whether this stream carries a change of `t`: the reader may act on it (on duty at its
    /// centre, or holding its claim), or it is the stream owner's institution's task.
    pub fn visible(&self, t: &Task, now: DateTime<Utc>) -> bool {
        t.institution == self.institution
            || self
                .workflow
                .read()
                .map(|w| w.may_act(&self.reader, t, now))
                .unwrap_or(false)
    }

    /// The cursor of the last durable changes.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tasks: self.store.tasks().sequence(),
            alerts: self.store.alerts().feed().sequence(),
        }
    }

    /// A `Last-Event-ID` as a cursor (`T.A`, or a bare `T`: alerts from now).
    pub fn parse_cursor(&self, id: &str) -> Option<Cursor> {
        let id = id.trim();
        match id.split_once('.') {
            Some((t, a)) => Some(Cursor {
                tasks: t.parse().ok()?,
                alerts: a.parse().ok()?,
            }),
            None => Some(Cursor {
                tasks: id.parse().ok()?,
                alerts: self.store.alerts().feed().sequence(),
            }),
        }
    }

    /// Wakes when a task or alert change becomes durable.
    pub fn subscribe(
        &self,
    ) -> (
        tokio::sync::watch::Receiver<u64>,
        tokio::sync::watch::Receiver<u64>,
    ) {
        (
            self.store.tasks().subscribe(),
            self.store.alerts().feed().subscribe(),
        )
    }

    /// Records that this stream's owner was shown alert `id` (its first delivery to them).
    pub fn delivered(&self, id: &str) {
        let event = huren_alerting::Event::Delivered {
            to: self.reader.clone(),
            at: now_utc(),
        };
        if let Err(e) = self
            .store
            .alerts()
            .apply(&huren_alerting::AlertId(id.to_string()), event)
        {
            tracing::warn!(alert = id, error = %e, "alert delivery not recorded");
        }
    }

    /// The changes after `after` that this stream carries (at most `limit` of each feed
    /// read): tasks first, then alerts.
    pub fn changes_since(&self, after: Cursor, limit: usize) -> Changes {
        let tasks = self.store.tasks();
        let alerts = self.store.alerts();
        let (Some(tv), Some(av)) = (
            tasks.changes_since(after.tasks, limit),
            alerts.feed().changes_since(after.alerts, limit),
        ) else {
            return Changes::Reset(self.cursor());
        };
        let now = now_utc();
        let mut at = after;
        let mut out = Vec::new();
        for (seq, id) in tv {
            at.tasks = seq;
            if let Some(t) = tasks.get(&id).filter(|t| self.visible(t, now)) {
                out.push((at, Change::Task(self.change(&t, now))));
            }
        }
        for (seq, id) in av {
            at.alerts = seq;
            let Some(a) = alerts.get(&id) else { continue };
            let recipient = self.alerting.is_recipient(&self.reader, &a, now);
            if recipient || a.raised.institution == self.institution {
                let step = a.step().step;
                out.push((
                    at,
                    Change::Alert(
                        AlertChange {
                            id: a.raised.id.0.clone(),
                            kind: a.raised.kind.as_str(),
                            state: a.state.as_str(),
                            institution: a.raised.institution.clone(),
                            group: a.raised.group.clone(),
                            step,
                            raised_at: a.raised.at,
                        },
                        recipient,
                    ),
                ));
            }
        }
        Changes::Some(out, at)
    }

    /// The change as carried.
    pub fn change(&self, t: &Task, now: DateTime<Utc>) -> TaskChange {
        TaskChange {
            id: t.id.0.clone(),
            state: t.state.as_str(),
            priority: t.priority.as_str(),
            kind: t.kind.as_str(),
            centre: t.centre.0.clone(),
            institution: t.institution.clone(),
            claimed_by: match &t.state {
                State::InProgress { .. } => t.claim_holder(now).map(str::to_string),
                _ => None,
            },
            due_at: t.due_at,
        }
    }
}

/// What a reader sees when reading one task: the task, its report, and beside it what a
/// reader needs (the patient's previous ECGs, recent lab results).
pub struct TaskView {
    /// The task as the worklist shows it.
    pub item: WorklistItem,
    /// The task.
    pub task: Task,
    /// The report being read (its current version).
    pub report: (ContentHash, std::sync::Arc<huren_model::Report>),
    /// The same person's earlier ECGs (newest first, at most [`MAX_PRIOR`]).
    pub prior: Vec<(ContentHash, std::sync::Arc<huren_model::Report>)>,
    /// The same person's recent lab reports (newest first, at most [`MAX_LABS`]).
    pub labs: Vec<(ContentHash, std::sync::Arc<huren_model::Report>)>,
    /// For a study: its instances from the sending institution (for previews).
    pub instances: Vec<huren_model::InstanceRecord>,
}

/// How many earlier ECGs a task view shows.
pub const MAX_PRIOR: usize = 3;
/// How many recent lab reports a task view shows.
pub const MAX_LABS: usize = 8;

/// One ECG the caller's institution sent, as its page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SentItem {
    /// The task.
    #[serde(flatten)]
    pub item: WorklistItem,
    /// Who signed it, when.
    pub signed_by: Option<String>,
    /// When it was signed.
    pub signed_at: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancelled: Option<String>,
    /// The signed diagnosis: statements, then the reader's text.
    pub diagnosis: Vec<String>,
}

/// The most tasks one worklist answer shows (the rest wait their turn in worklist order;
/// the answer says how many are open in all).
pub const MAX_WORKLIST: usize = 1000;
/// How many a worklist answer shows unless asked for fewer or more.
pub const DEFAULT_WORKLIST: usize = 200;

/// How many of an institution's tasks its page lists (newest first).
pub const MAX_SENT: usize = 200;

impl Gate {
    /// Opens an event stream for `p`: a clinician's (a reader's changes of the centres they
    /// are on duty at, and their own institution's tasks). Audited once, at opening; the
    /// stream carries no patient data.
    pub async fn task_events(&self, p: &Principal) -> Result<EventScope, Problem> {
        let mut rec = record(p, "task_events");
        if p.role != Role::Clinician {
            return Err(self
                .refuse(
                    rec,
                    &role_denial("the task event stream is for readers and sending clinicians"),
                )
                .await);
        }
        let centres: Vec<String> = self
            .wf()
            .centres_on_duty(&p.id, now_utc())
            .into_iter()
            .map(|c| c.0.clone())
            .collect();
        rec.detail = json!({ "centres": centres });
        self.audit(rec).await?;
        Ok(EventScope {
            reader: p.id.clone(),
            institution: p.institution.clone(),
            workflow: self.workflow.clone(),
            alerting: self.alerting.clone(),
            store: self.store.clone(),
        })
    }

    /// A task with its patient's person key, for one who may act on it at `now`: a clinician
    /// (else 403 with `not_reader`) on duty at the task's centre or holding its claim (else
    /// 403). 404 for no such task. Every refusal is audited on `rec`, which gets the patient.
    async fn acting_on(
        &self,
        p: &Principal,
        id: &str,
        now: DateTime<Utc>,
        not_reader: &str,
        rec: &mut huren_audit::AuditRecord,
    ) -> Result<(Task, Option<String>), Problem> {
        if p.role != Role::Clinician {
            return Err(self.refuse(rec.clone(), &role_denial(not_reader)).await);
        }
        let Some(task) = self.store.tasks().get(&TaskId(id.to_string())) else {
            rec.outcome = "not found".into();
            self.audit(rec.clone()).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id));
        };
        let (_, _, person) = self.task_patient(&task);
        rec.patient = person.clone();
        if !self.wf().may_act(&p.id, &task, now) {
            return Err(self
                .refuse(
                    rec.clone(),
                    &role_denial(
                        "the roster has this principal on duty at another centre or none now",
                    ),
                )
                .await);
        }
        Ok((task, person))
    }

    /// The reading view of a task for a reader who may act on it: the report, the patient's
    /// earlier ECGs and recent lab reports across the consortium (the reading task is the
    /// basis; identity-uncertain reports are left out). Audited once, naming what was shown.
    pub async fn task_view(&self, p: &Principal, id: &str) -> Result<TaskView, Problem> {
        let now = now_utc();
        let mut rec = record(p, "task_view");
        rec.detail = json!({ "task": id, "basis": "reading_task" });
        let (task, person) = self.acting_on(p, id, now_utc(), READS, &mut rec).await?;
        let current = task.current_report().to_string();
        let loaded = current
            .parse::<ContentHash>()
            .ok()
            .and_then(|h| Some((h, self.store.report_shared(&h).ok()??)));
        let Some((hash, report)) = loaded else {
            rec.outcome = format!("error: report {current} not stored");
            self.audit(rec).await?;
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "task state",
                format!("the task's report {current} is not stored"),
            ));
        };
        let mut prior = Vec::new();
        let mut labs = Vec::new();
        if let Some(person) = &person {
            let metas = self.store.person_reports(person).unwrap_or_default();
            let own_chain = self
                .store
                .report_meta(&hash)
                .ok()
                .flatten()
                .map(|m| m.chain);
            for m in metas {
                if m.identity_review.is_some() || Some(&m.chain) == own_chain.as_ref() {
                    continue;
                }
                let want = match m.kind {
                    huren_model::ReportKind::Ecg => prior.len() < MAX_PRIOR,
                    huren_model::ReportKind::Lab => labs.len() < MAX_LABS,
                    _ => false,
                };
                if !want {
                    continue;
                }
                if let Ok(Some(r)) = self.store.report_shared(&m.hash) {
                    match m.kind {
                        huren_model::ReportKind::Ecg => prior.push((m.hash, r)),
                        _ => labs.push((m.hash, r)),
                    }
                }
            }
        }
        let instances = match report.imaging.as_deref() {
            Some(im) => self
                .store
                .instances_of_study(&im.study_instance_uid)?
                .into_iter()
                .filter(|r| r.institution == report.source.institution)
                .collect(),
            None => Vec::new(),
        };
        let mut returned = vec![hash.to_string()];
        returned.extend(prior.iter().chain(&labs).map(|(h, _)| h.to_string()));
        rec.returned = returned;
        self.audit(rec).await?;
        Ok(TaskView {
            item: self.item(&task, now).0,
            task,
            report: (hash, report),
            prior,
            labs,
            instances,
        })
    }

    /// One report of a task's patient (the task's report, an earlier ECG, a lab report), for
    /// a reader who may act on the task: the reading task is the basis. Refused when the
    /// report is another person's or identity-uncertain. Audited once.
    pub async fn task_report(
        &self,
        p: &Principal,
        id: &str,
        hash: &str,
        action: &'static str,
    ) -> Result<ReportRead, Problem> {
        let mut rec = record(p, action);
        rec.detail = json!({ "task": id, "basis": "reading_task" });
        let h: ContentHash = hash.parse().map_err(|e| {
            Problem::new(StatusCode::BAD_REQUEST, "bad report hash", format!("{e}"))
        })?;
        let (_task, person) = self.acting_on(p, id, now_utc(), READS, &mut rec).await?;
        let meta = self.store.report_meta(&h)?;
        let same = meta.as_ref().is_some_and(|m| {
            m.identity_review.is_none()
                && person.is_some()
                && self.store.person_key(&local_id(&m.local)).ok() == person
        });
        let Some(meta) = meta.filter(|_| same) else {
            return Err(self
                .refuse(
                    rec,
                    &Denial {
                        status: 404,
                        code: "NOT_THIS_TASK",
                        reason: "not a report of this task's patient".into(),
                        wrong_code: false,
                    },
                )
                .await);
        };
        rec.returned = vec![meta.hash.to_string()];
        self.audit(rec).await?;
        Ok(ReportRead {
            meta,
            store: self.store.clone(),
        })
    }

    /// The ECGs and studies `p`'s institution sent for reading, newest first (at most
    /// [`MAX_SENT`]): state, reader, times and the signed diagnosis. A clinician sees their
    /// own institution's; audited once with the patients shown.
    pub async fn sent_tasks(&self, p: &Principal) -> Result<Vec<SentItem>, Problem> {
        let now = now_utc();
        let mut rec = record(p, "sent_tasks");
        if p.role != Role::Clinician {
            return Err(self
                .refuse(
                    rec,
                    &role_denial("an institution's sent ECGs are shown to its clinicians"),
                )
                .await);
        }
        let mut tasks = self
            .store
            .tasks()
            .select(|t| t.institution == p.institution);
        tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.0.cmp(&b.id.0)));
        tasks.truncate(MAX_SENT);
        let mut out = Vec::with_capacity(tasks.len());
        let mut persons: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut returned = Vec::new();
        for t in &tasks {
            let (item, person) = self.item(t, now);
            if let Some(person) = person {
                if seen.insert(person.clone()) {
                    persons.push(person);
                }
            }
            let (mut signed_by, mut signed_at, mut cancelled) = (None, None, None);
            let mut diagnosis = Vec::new();
            match &t.state {
                State::Completed { by, at, .. } => {
                    signed_by = Some(by.clone());
                    signed_at = Some(*at);
                    let signed = t.current_report();
                    if let Some(r) = signed
                        .parse::<ContentHash>()
                        .ok()
                        .and_then(|h| self.store.report_shared(&h).ok().flatten())
                    {
                        returned.push(signed.to_string());
                        let statements: Vec<String> = r
                            .ecg
                            .as_deref()
                            .map(|e| e.statements.iter().map(|s| s.text.clone()).collect())
                            .unwrap_or_default();
                        // The reader's text is the conclusion, unless the conclusion is the
                        // statements joined (a signature without text).
                        let joined = statements.join("；");
                        diagnosis.extend(statements);
                        if let Some(c) = r.conclusion.as_ref().filter(|c| **c != joined) {
                            diagnosis.push(c.clone());
                        }
                    }
                }
                State::Cancelled { reason, .. } => cancelled = Some(reason.clone()),
                _ => {}
            }
            out.push(SentItem {
                item,
                signed_by,
                signed_at,
                cancelled,
                diagnosis,
            });
        }
        rec.detail = json!({ "tasks": out.len(), "patients": persons });
        rec.returned = returned;
        self.audit(rec).await?;
        Ok(out)
    }
}

/// `INST:LOCAL` as a patient id.
fn local_id(local: &str) -> PatientId {
    let (institution, local_id) = local.split_once(':').unwrap_or(("", local));
    PatientId::Local {
        institution: institution.to_string(),
        local_id: local_id.to_string(),
    }
}
