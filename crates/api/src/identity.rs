//! The identity review queue (issue 16): a national ID claimed for a local ID that is
//! already linked to another one does not relink anything; the store opens a review item,
//! and the privacy officer decides it here. `GET /api/v1/identity/reviews` lists the open
//! items; `POST /api/v1/identity/reviews/{id}/resolve` `{"decision":"keep"|"accept",
//! "reason":"…"}` decides one: `keep` leaves every link as it is (the claim's reports
//! belong to the existing person), `accept` relinks that one local ID — with its reports,
//! nothing else — to the claimed person. Privacy officer only; one audit record per request.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huren_access::Role;
use huren_store::{ReviewDecision, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};
use crate::gate::{record, Problem};

const ACTION: &str = "identity_review";

/// `GET /api/v1/identity/reviews`: the open identity review items, oldest first.
pub async fn reviews(
    State(st): State<ApiState>,
    Authed(p): Authed,
) -> Result<Json<Value>, Problem> {
    st.gate
        .require_role(&p, &[Role::PrivacyOfficer], ACTION)
        .await?;
    let items = st.gate.identity_reviews(&p).await?;
    let mut rec = record(&p, ACTION);
    rec.purpose = Some("privacy_review".into());
    rec.detail = json!({
        "open": items.len(),
        "reviews": items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
    });
    st.audit(rec).await?;
    Ok(Json(json!({"count": items.len(), "reviews": items})))
}

/// Body of `POST /api/v1/identity/reviews/{id}/resolve`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// `keep` (the existing link stays) or `accept` (the claim is right).
    decision: String,
    /// Why, in words (required).
    reason: String,
}

/// `POST /api/v1/identity/reviews/{id}/resolve`: decides one item; answers what moved.
pub async fn resolve(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    st.gate
        .require_role(&p, &[Role::PrivacyOfficer], ACTION)
        .await?;
    let mut rec = record(&p, ACTION);
    rec.purpose = Some("privacy_review".into());
    let refuse = |status: StatusCode, title: &'static str, detail: String| {
        Problem::new(status, title, detail)
    };
    let parsed = serde_json::from_slice::<ResolveBody>(&body)
        .map_err(|e| format!("body: {e}"))
        .and_then(|b| {
            let decision = match b.decision.as_str() {
                "keep" => ReviewDecision::KeepExisting,
                "accept" => ReviewDecision::AcceptClaim,
                other => return Err(format!("decision must be keep or accept, not {other:?}")),
            };
            let reason = b.reason.trim().to_string();
            if reason.is_empty() {
                return Err("a reason is required".into());
            }
            Ok((decision, reason))
        });
    let (decision, reason) = match parsed {
        Ok(v) => v,
        Err(why) => {
            rec.outcome = "bad_request".into();
            rec.detail = json!({"review": id, "error": why});
            st.audit(rec).await?;
            return Err(refuse(StatusCode::BAD_REQUEST, "bad resolution", why));
        }
    };
    match st
        .gate
        .resolve_identity_review(&p, &id, decision, &reason)
        .await?
    {
        Ok(r) => {
            rec.patient = Some(r.from.clone());
            rec.detail = json!({
                "review": id,
                "decision": decision,
                "reason": reason,
                "moved_local": r.moved_local,
                "to": r.to,
                "moved_reports": r.moved_reports.len(),
            });
            rec.returned = r.moved_reports.iter().map(|h| h.to_string()).collect();
            st.audit(rec).await?;
            Ok(Json(json!({
                "review": r.review,
                "decision": decision,
                "moved_local": r.moved_local,
                "from": r.from,
                "to": r.to,
                "moved_reports": r.moved_reports,
            })))
        }
        Err(e) => {
            let (status, outcome, title) = match e {
                StoreError::ReviewNotFound(_) => {
                    (StatusCode::NOT_FOUND, "not_found", "no such review item")
                }
                _ => (
                    StatusCode::CONFLICT,
                    "conflict",
                    "review item already resolved",
                ),
            };
            rec.outcome = outcome.into();
            rec.detail = json!({"review": id, "decision": decision});
            st.audit(rec).await?;
            Err(refuse(status, title, e.to_string()))
        }
    }
}
