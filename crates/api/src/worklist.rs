//! The reading centre's worklist (issue 17): `GET /api/v1/worklist` (the caller's centres,
//! by the roster) and `POST /api/v1/worklist/{id}/claim`, `/release`, `/cancel`
//! (`{"reason":"…"}`), `/sign` and `/amend` (`{"statements":[…],"text":"…","reason":"…"}`). Everything is decided and audited by the gate
//! ([`huren_gate::worklist`]); an answer goes out only after the task's event is durable.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use huren_gate::worklist::{Change, Changes, Cursor, EventScope, TaskAct};
use huren_gate::Problem;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};

/// The query of `GET /api/v1/worklist`.
#[derive(Deserialize)]
pub struct WorklistQuery {
    /// How many tasks (default 200, at most 1,000).
    pub limit: Option<usize>,
}

/// `GET /api/v1/worklist?limit=`: `{"tasks":[…],"open":n}`, the first `limit` open tasks in
/// worklist order and how many are open in all.
pub async fn worklist(
    State(st): State<ApiState>,
    Authed(p): Authed,
    axum::extract::Query(q): axum::extract::Query<WorklistQuery>,
) -> Result<Json<Value>, Problem> {
    let limit = q.limit.unwrap_or(huren_gate::worklist::DEFAULT_WORKLIST);
    let (tasks, open) = st.gate.worklist(&p, limit).await?;
    Ok(Json(json!({ "tasks": tasks, "open": open })))
}

/// `POST /api/v1/worklist/{id}/claim`.
pub async fn claim(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let t = st.gate.task_act(&p, &id, TaskAct::Claim).await?;
    Ok(Json(json!({ "task": t })))
}

/// `POST /api/v1/worklist/{id}/release`.
pub async fn release(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let t = st.gate.task_act(&p, &id, TaskAct::Release).await?;
    Ok(Json(json!({ "task": t })))
}

/// `POST /api/v1/worklist/{id}/cancel` with `{"reason":"…"}`.
pub async fn cancel(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let reason = crate::api::reason_body(&body)?;
    let t = st.gate.task_act(&p, &id, TaskAct::Cancel(reason)).await?;
    Ok(Json(json!({ "task": t })))
}

/// Body of `POST /api/v1/worklist/{id}/sign`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    /// Structured statements, in order.
    #[serde(default)]
    statements: Vec<String>,
    /// Free text.
    #[serde(default)]
    text: String,
}

/// `POST /api/v1/worklist/{id}/sign` with `{"statements":[…],"text":"…"}`: stores the signed
/// report version and completes the task; answers `{"report":"blake3:…","task":…}`.
pub async fn sign(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: SignBody = crate::api::json_body(&body)?;
    let (task, report) = sign_and_queue(&st, &p, &id, &b.statements, &b.text).await?;
    Ok(Json(json!({ "report": report.to_string(), "task": task })))
}

/// Signs task `id` for `p` (through the gate: roster, claim, audit) and queues the signed
/// report for its institution in the durable outbox before answering. The API's and the web
/// page's signature.
pub async fn sign_and_queue(
    st: &ApiState,
    p: &huren_access::Principal,
    id: &str,
    statements: &[String],
    text: &str,
) -> Result<(huren_gate::worklist::WorklistItem, huren_model::ContentHash), Problem> {
    let config = st.gw.config.clone();
    let reader = p.id.clone();
    let (task, report) = st
        .gate
        .sign_task(p, id, |task, prev, prev_hash| {
            huren_ingest::reading::signed_report(
                &config,
                prev,
                prev_hash,
                &huren_ingest::reading::Signature {
                    task,
                    reader: &reader,
                    statements,
                    text,
                    at: chrono::Utc::now(),
                    amendment: None,
                },
            )
        })
        .await?;
    after_version(st, report, "signed and the task completed").await?;
    Ok((task, report))
}

/// What follows a signed or amended version, before the answer: a STEMI statement raises the
/// alert its chain does not have yet, and the version is queued for its institution.
async fn after_version(
    st: &ApiState,
    report: huren_model::ContentHash,
    what: &str,
) -> Result<(), Problem> {
    raise_alert(st, report).await?;
    queue_for_institution(st, report, what).await
}

/// Raises the alert of a signed report whose statements are critical (a STEMI), unless its
/// chain has one; before the answer.
async fn raise_alert(st: &ApiState, report: huren_model::ContentHash) -> Result<(), Problem> {
    let gw = st.gw.clone();
    match tokio::task::spawn_blocking(move || gw.raise_alert_for(&report)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(report = %report, error = %e, "alert of a signed report not raised");
            Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "alert not raised",
                format!("the report {report} is signed, but raising its alert failed: {e}"),
            ))
        }
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "alert not raised",
            format!("the report {report} is signed; raising its alert failed: {e}"),
        )),
    }
}

/// Queues a signed (or amended) report for its institution in the durable outbox, before the
/// answer. If that fails the version is stored and the task recorded; the start-up
/// reconciliation queues it (`Gateway::reconcile_outbox`).
async fn queue_for_institution(
    st: &ApiState,
    report: huren_model::ContentHash,
    what: &str,
) -> Result<(), Problem> {
    let gw = st.gw.clone();
    match tokio::task::spawn_blocking(move || gw.enqueue_signed(&report)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(report = %report, error = %e, "signed report not queued for its institution");
            Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "result not queued",
                format!(
                    "the report {report} is {what}, but queueing it for the institution failed; it is queued at the next start"
                ),
            ))
        }
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "result not queued",
            format!("the report {report} is {what}; queueing it failed: {e}"),
        )),
    }
}

/// Body of `POST /api/v1/worklist/{id}/amend`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendBody {
    /// Structured statements, in order.
    #[serde(default)]
    statements: Vec<String>,
    /// Free text.
    #[serde(default)]
    text: String,
    /// Why the signed report is amended (required).
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/worklist/{id}/amend` with `{"statements":[…],"text":"…","reason":"…"}`:
/// stores a new signed version (status corrected) of a completed task's report, superseding
/// the signed one (which stays retrievable), records the amendment and its reason on the task,
/// queues the amended report for the institution; answers `{"report":"blake3:…","task":…}`.
pub async fn amend(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: AmendBody = crate::api::json_body(&body)?;
    let config = st.gw.config.clone();
    let reader = p.id.clone();
    let (task, report) = st
        .gate
        .amend_task(&p, &id, &b.reason, |task, prev, prev_hash| {
            huren_ingest::reading::signed_report(
                &config,
                prev,
                prev_hash,
                &huren_ingest::reading::Signature {
                    task,
                    reader: &reader,
                    statements: &b.statements,
                    text: &b.text,
                    at: chrono::Utc::now(),
                    amendment: Some(&b.reason),
                },
            )
        })
        .await?;
    after_version(&st, report, "amended").await?;
    Ok(Json(json!({ "report": report.to_string(), "task": task })))
}

/// How long one event stream lives before it ends (the client reconnects with
/// `Last-Event-ID`, and the gate decides again: a revoked token or a roster change counts).
const STREAM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// How soon a client reconnects after a stream ends.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// One connected event stream, counted in the `huren_event_streams` gauge until dropped
/// (the connection closed or the stream's lifetime ended).
struct StreamCount;

impl StreamCount {
    fn new() -> StreamCount {
        huren_metrics::global().gauges.event_streams.inc();
        StreamCount
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        huren_metrics::global().gauges.event_streams.dec();
    }
}

/// The server-sent event stream of task and alert changes for `scope`, after the client's
/// `Last-Event-ID` (`T.A`: the task and alert sequences; `None`: from now). Events: `ready`
/// (id: the current cursor), `task` (a [`huren_gate::worklist::TaskChange`]), `alert` (an
/// [`huren_gate::worklist::AlertChange`]; its delivery to a recipient's screen is stamped),
/// `reset` (changes were missed: fetch the lists again). No patient data in any of them.
pub fn task_stream(
    scope: EventScope,
    last_event_id: Option<String>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    struct S {
        scope: EventScope,
        rx: (
            tokio::sync::watch::Receiver<u64>,
            tokio::sync::watch::Receiver<u64>,
        ),
        last: Cursor,
        pending: std::collections::VecDeque<Event>,
        /// Alerts whose events were handed to the connection: their delivery to this
        /// stream's owner is stamped once they are out, not on the way.
        sent: Vec<String>,
        deadline: tokio::time::Instant,
        /// Counts the stream in `huren_event_streams` while it lives.
        _counted: StreamCount,
    }
    let rx = scope.subscribe();
    let now = scope.cursor();
    let mut pending = std::collections::VecDeque::new();
    let asked = last_event_id.as_deref().map(|id| scope.parse_cursor(id));
    let last = match asked {
        Some(Some(c)) if c.tasks <= now.tasks && c.alerts <= now.alerts => c,
        Some(_) => {
            pending.push_back(Event::default().event("reset").data("{}"));
            now
        }
        None => now,
    };
    pending.push_front(
        Event::default()
            .event("ready")
            .id(last.to_string())
            .retry(RETRY)
            .data(json!({ "cursor": last.to_string() }).to_string()),
    );
    let st = S {
        scope,
        rx,
        last,
        pending,
        sent: Vec::new(),
        deadline: tokio::time::Instant::now() + STREAM_LIFETIME,
        _counted: StreamCount::new(),
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok(e), st));
            }
            st.rx.0.borrow_and_update();
            st.rx.1.borrow_and_update();
            let scope = st.scope.clone();
            let after = st.last;
            let sent = std::mem::take(&mut st.sent);
            // Stamping the deliveries just sent and reading the feeds touch the store: off
            // the runtime.
            let read = tokio::task::spawn_blocking(move || {
                for id in &sent {
                    scope.delivered(id);
                }
                scope.changes_since(after, 512)
            })
            .await;
            let Ok(changes) = read else { return None };
            match changes {
                Changes::Reset(c) => {
                    st.last = c;
                    st.pending
                        .push_back(Event::default().event("reset").id(c.to_string()).data("{}"));
                }
                Changes::Some(v, upto) if upto == st.last => {
                    debug_assert!(v.is_empty());
                    let (a, b) = (&mut st.rx.0, &mut st.rx.1);
                    let woke = tokio::time::timeout_at(st.deadline, async {
                        tokio::select! {
                            r = a.changed() => r,
                            r = b.changed() => r,
                        }
                    })
                    .await;
                    match woke {
                        Ok(Ok(())) => {}
                        _ => return None,
                    }
                }
                Changes::Some(v, upto) => {
                    st.last = upto;
                    for (at, change) in v {
                        let (name, data) = match change {
                            Change::Task(t) => ("task", serde_json::to_string(&t)),
                            Change::Alert(a, recipient) => {
                                if recipient {
                                    st.sent.push(a.id.clone());
                                }
                                ("alert", serde_json::to_string(&a))
                            }
                        };
                        st.pending.push_back(
                            Event::default()
                                .event(name)
                                .id(at.to_string())
                                .data(data.unwrap_or_default()),
                        );
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

/// The client's `Last-Event-ID`.
pub fn last_event_id(h: &axum::http::HeaderMap) -> Option<String> {
    Some(h.get("last-event-id")?.to_str().ok()?.trim().to_string())
}

/// `GET /api/v1/events`: the caller's task changes as server-sent events (see
/// [`task_stream`]); opening it is authorised and audited once by the gate.
pub async fn events(
    State(st): State<ApiState>,
    Authed(p): Authed,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, Problem> {
    let scope = st.gate.task_events(&p).await?;
    Ok(task_stream(scope, last_event_id(&headers)).into_response())
}
