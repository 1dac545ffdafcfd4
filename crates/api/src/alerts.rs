//! Alerts (issue 18): `GET /api/v1/alerts?state=open|all` (the caller's: as a recipient, or
//! their institution's), `POST /api/v1/alerts/{id}/ack` (`{"decision":"…","note":"…"}`) and
//! `POST /api/v1/alerts/{id}/cancel` (`{"reason":"…"}`). Decided and audited by the gate
//! ([`huren_gate::alerts`]); an answer goes out only after the alert's event is durable.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use huren_alerting::Decision;
use huren_gate::alerts::AlertAct;
use huren_gate::Problem;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};

/// The query of `GET /api/v1/alerts`.
#[derive(Deserialize)]
pub struct AlertsQuery {
    /// `open` (default) or `all`.
    pub state: Option<String>,
}

/// `GET /api/v1/alerts?state=open|all`: `{"alerts":[…]}`, newest first.
pub async fn alerts(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<Value>, Problem> {
    let open_only = match q.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad state",
                format!("state must be open or all, not {other:?}"),
            ))
        }
    };
    let items = st.gate.alerts(&p, open_only).await?;
    Ok(Json(json!({ "alerts": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    decision: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"decision":"stemi_transfer|not_stemi|need_more|read_back","note":"…"}`.
pub async fn ack(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: AckBody = crate::api::json_body(&body)?;
    let decision = Decision::parse(&b.decision).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad decision",
            format!(
                "decision must be stemi_transfer, not_stemi, need_more or read_back, not {:?}",
                b.decision.chars().take(40).collect::<String>()
            ),
        )
    })?;
    let a = st
        .gate
        .alert_act(
            &p,
            &id,
            AlertAct::Acknowledge {
                decision,
                note: b.note,
            },
        )
        .await?;
    Ok(Json(json!({ "alert": a })))
}

/// `POST /api/v1/alerts/{id}/cancel` with `{"reason":"…"}`.
pub async fn cancel(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let reason = crate::api::reason_body(&body)?;
    let a = st.gate.alert_act(&p, &id, AlertAct::Cancel(reason)).await?;
    Ok(Json(json!({ "alert": a })))
}
