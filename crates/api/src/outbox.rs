//! The operator view of the outbox (issue 17, docs/outbox.md): `GET /api/v1/outbox
//! ?state=pending|delivered|parked` lists the outbound results — id (the signed report's
//! hash), destination (institution code), MSH-10, state, attempts, last result, times — never
//! the message content (patient data). Privacy officer or operator; one audit record per
//! request (a refusal is audited by the gate). `?channel=webhook` lists the alert notices for
//! the groups' webhooks instead (`msh10` is then the `webhook-id`, `ack_code` the HTTP status),
//! `?channel=regional` the shared documents for the regional platform (`msh10` is the
//! document id, the report's hash in hex).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use huren_store::OutboxState;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};
use crate::gate::{record, Problem};

const ACTION: &str = "outbox_view";

/// Query of `GET /api/v1/outbox`.
#[derive(Deserialize)]
pub struct OutboxQuery {
    /// `pending`, `delivered` or `parked`; absent: all.
    state: Option<String>,
    /// `hl7` (default: signed results to the institutions), `webhook` (alert notices) or
    /// `regional` (shared documents for the regional platform).
    channel: Option<String>,
}

/// `GET /api/v1/outbox?state=…`: `{"count":n,"entries":[…]}`, oldest first.
pub async fn outbox(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Value>, Problem> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match OutboxState::parse(s) {
            Some(s) => Some(s),
            None => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad state",
                    "state must be pending, delivered or parked",
                ))
            }
        },
    };
    let channel = match q.channel.as_deref() {
        None | Some("") => "hl7",
        Some(c) if huren_store::OUTBOX_CHANNELS.contains(&c) => c,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad channel",
                "channel must be hl7, webhook or regional",
            ))
        }
    };
    let entries = st.gate.outbox(&p, state, channel).await?;
    let mut rec = record(&p, ACTION);
    rec.purpose = Some("operations".into());
    rec.detail = json!({
        "state": state.map(OutboxState::as_str),
        "channel": channel,
        "count": entries.len(),
    });
    st.audit(rec).await?;
    Ok(Json(json!({"count": entries.len(), "entries": entries})))
}
