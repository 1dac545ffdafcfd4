//! The identity review queue (issue 16): a national ID claimed for a local ID that is
//! already linked to another one does not relink anything; the store opens a review item,
//! and the privacy officer decides it here. `GET /api/v1/identity/reviews` lists the open
//! items; `POST /api/v1/identity/reviews/{id}/resolve` `{"decision":"keep"|"accept",
//! "reason":"…"}` decides one: `keep` leaves every link as it is (the claim's reports
//! belong to the existing person), `accept` relinks that one local ID — with its reports,
//! nothing else — to the claimed person. Privacy officer only; one audit record per request.
//!
//! [`list`] and [`decide`] hold the role check, the validation and the audit record; the
//! JSON handlers here and the web page (`/ui/identity`, channel `web`) both call them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use huren_access::Role;
use huren_store::{ReviewDecision, ReviewItem, ReviewResolution, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};
use crate::auth::Principal;
use crate::gate::{merge, record, Problem};

const ACTION: &str = "identity_review";

/// The audit record of an identity review request, with the channel (`web`) when not the API.
fn base(p: &Principal, channel: Option<&'static str>) -> huren_audit::AuditRecord {
    let mut rec = record(p, ACTION);
    rec.purpose = Some("privacy_review".into());
    if let Some(c) = channel {
        rec.detail = json!({ "channel": c });
    }
    rec
}

/// The open identity review items, oldest first, for the privacy officer (a refusal is
/// audited by the gate); writes the one audit record of the view.
pub async fn list(
    st: &ApiState,
    p: &Principal,
    channel: Option<&'static str>,
) -> Result<Vec<ReviewItem>, Problem> {
    st.gate
        .require_role(p, &[Role::PrivacyOfficer], ACTION)
        .await?;
    let items = st.gate.identity_reviews(p).await?;
    let mut rec = base(p, channel);
    merge(
        &mut rec.detail,
        json!({
            "open": items.len(),
            "reviews": items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        }),
    );
    st.audit(rec).await?;
    Ok(items)
}

/// A resolution as asked: the decision's word (`keep` / `accept`) and the reason, or why the
/// request could not even be read.
pub type Asked<'a> = Result<(&'a str, &'a str), String>;

/// Decides review item `id` for the privacy officer: checks the role (a refusal is audited
/// by the gate), then the decision (`keep` / `accept`) and a non-blank reason (a bad one is
/// answered 400 and changes nothing), then resolves through the gate and the store (404 no
/// such item, 409 already resolved). Writes the one audit record of the request; answers
/// the decision and what moved.
pub async fn decide(
    st: &ApiState,
    p: &Principal,
    id: &str,
    asked: Asked<'_>,
    channel: Option<&'static str>,
) -> Result<(ReviewDecision, ReviewResolution), Problem> {
    st.gate
        .require_role(p, &[Role::PrivacyOfficer], ACTION)
        .await?;
    let mut rec = base(p, channel);
    let refuse = |status: StatusCode, title: &'static str, detail: String| {
        Problem::new(status, title, detail)
    };
    let parsed = asked.and_then(|(decision, reason)| {
        let decision = match decision {
            "keep" => ReviewDecision::KeepExisting,
            "accept" => ReviewDecision::AcceptClaim,
            other => return Err(format!("decision must be keep or accept, not {other:?}")),
        };
        let reason = reason.trim().to_string();
        if reason.is_empty() {
            return Err("a reason is required".into());
        }
        Ok((decision, reason))
    });
    let (decision, reason) = match parsed {
        Ok(v) => v,
        Err(why) => {
            rec.outcome = "bad_request".into();
            merge(&mut rec.detail, json!({"review": id, "error": why}));
            st.audit(rec).await?;
            return Err(refuse(StatusCode::BAD_REQUEST, "bad resolution", why));
        }
    };
    match st
        .gate
        .resolve_identity_review(p, id, decision, &reason)
        .await?
    {
        Ok(r) => {
            rec.patient = Some(r.from.clone());
            merge(
                &mut rec.detail,
                json!({
                    "review": id,
                    "decision": decision,
                    "reason": reason,
                    "moved_local": r.moved_local,
                    "to": r.to,
                    "moved_reports": r.moved_reports.len(),
                }),
            );
            rec.returned = r.moved_reports.iter().map(|h| h.to_string()).collect();
            st.audit(rec).await?;
            Ok((decision, r))
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
            merge(&mut rec.detail, json!({"review": id, "decision": decision}));
            st.audit(rec).await?;
            Err(refuse(status, title, e.to_string()))
        }
    }
}

/// `GET /api/v1/identity/reviews`: the open identity review items, oldest first.
pub async fn reviews(
    State(st): State<ApiState>,
    Authed(p): Authed,
) -> Result<Json<Value>, Problem> {
    let items = list(&st, &p, None).await?;
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
    let body = serde_json::from_slice::<ResolveBody>(&body).map_err(|e| format!("body: {e}"));
    let asked = body
        .as_ref()
        .map(|b| (b.decision.as_str(), b.reason.as_str()))
        .map_err(Clone::clone);
    let (decision, r) = decide(&st, &p, &id, asked, None).await?;
    Ok(Json(json!({
        "review": r.review,
        "decision": decision,
        "moved_local": r.moved_local,
        "from": r.from,
        "to": r.to,
        "moved_reports": r.moved_reports,
    })))
}
