//! The reading centre's worklist (issue 17): `GET /api/v1/worklist` (the caller's centres,
//! by the roster) and `POST /api/v1/worklist/{id}/claim`, `/release`, `/cancel`
//! (`{"reason":"…"}`). Everything is decided and audited by the gate
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
                },
            )
        })
        .await?;
    // The signed report goes back to its institution through the durable outbox: queued
    // before the answer. If that fails the report is signed and the task completed; the
    // start-up reconciliation queues it (`Gateway::reconcile_outbox`).
    let gw = st.gw.clone();
    match tokio::task::spawn_blocking(move || gw.enqueue_signed(&report)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(report = %report, error = %e, "signed report not queued for its institution");
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "result not queued",
                format!(
                    "the report {report} is signed and the task completed, but queueing it for the institution failed; it is queued at the next start"
                ),
            ));
        }
        Err(e) => {
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "result not queued",
                format!("the report {report} is signed; queueing it failed: {e}"),
            ))
        }
    }
    Ok(Json(json!({ "report": report.to_string(), "task": task })))
}
