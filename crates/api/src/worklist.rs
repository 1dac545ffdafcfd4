//! The reading centre's worklist (issue 17): `GET /api/v1/worklist` (the caller's centres,
//! by the roster) and `POST /api/v1/worklist/{id}/claim`, `/release`, `/cancel`
//! (`{"reason":"…"}`), `/sign` and `/amend` (`{"statements":[…],"text":"…","reason":"…"}`). Everything is decided and audited by the gate
//! ([`huren_gate::worklist`]); an answer goes out only after the task's event is durable.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huren_gate::worklist::TaskAct;
use huren_gate::Problem;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};

/// `GET /api/v1/worklist`: `{"tasks":[…]}` in worklist order.
pub async fn worklist(
    State(st): State<ApiState>,
    Authed(p): Authed,
) -> Result<Json<Value>, Problem> {
    let tasks = st.gate.worklist(&p).await?;
    Ok(Json(json!({ "tasks": tasks })))
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

/// Body of `POST /api/v1/worklist/{id}/cancel`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why the task is withdrawn (required).
    reason: String,
}

/// `POST /api/v1/worklist/{id}/cancel` with `{"reason":"…"}`.
pub async fn cancel(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: CancelBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad body", format!("body: {e}")))?;
    let t = st.gate.task_act(&p, &id, TaskAct::Cancel(b.reason)).await?;
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
    let b: SignBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad body", format!("body: {e}")))?;
    let config = st.gw.config.clone();
    let reader = p.id.clone();
    let (task, report) = st
        .gate
        .sign_task(&p, &id, |task, prev, prev_hash| {
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
                    amendment: None,
                },
            )
        })
        .await?;
    queue_for_institution(&st, report, "signed and the task completed").await?;
    Ok(Json(json!({ "report": report.to_string(), "task": task })))
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
    let b: AmendBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad body", format!("body: {e}")))?;
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
    queue_for_institution(&st, report, "amended").await?;
    Ok(Json(json!({ "report": report.to_string(), "task": task })))
}
