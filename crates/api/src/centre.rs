//! A reading centre for its heads (issue 17): `GET /api/v1/centres/{id}/roster`,
//! `PUT /api/v1/centres/{id}/roster` (`{"roster":[{"reader","days","from","to"}]}`: the
//! centre's whole roster from now on) and `GET /api/v1/centres/{id}/workload?from=&to=`
//! (RFC 3339; default the last 24 hours). Decided and audited by the gate
//! ([`huren_gate::centre`]).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use huren_gate::Problem;
use huren_workflow::RosterEntry;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};

/// `GET /api/v1/centres/{id}/roster`.
pub async fn roster(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(json!(st.gate.centre_roster(&p, &id).await?)))
}

/// One roster entry as the API takes it (the centre is the path's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    /// The reader's principal id.
    pub reader: String,
    /// Weekdays (`mon` … `sun`); empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, with `to`; both omitted: all day.
    #[serde(default)]
    pub from: Option<String>,
    /// `HH:MM` (exclusive; before `from`: past midnight).
    #[serde(default)]
    pub to: Option<String>,
}

impl EntryBody {
    /// The entry for centre `centre`.
    pub fn entry(self, centre: &str) -> RosterEntry {
        RosterEntry {
            reader: self.reader.trim().to_string(),
            centre: centre.to_string(),
            days: self.days,
            from: self.from.filter(|s| !s.trim().is_empty()),
            to: self.to.filter(|s| !s.trim().is_empty()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterBody {
    roster: Vec<EntryBody>,
}

/// `PUT /api/v1/centres/{id}/roster`: answers the roster now in force.
pub async fn edit_roster(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: RosterBody = crate::api::json_body(&body)?;
    let entries = b.roster.into_iter().map(|e| e.entry(&id)).collect();
    Ok(Json(json!(st.gate.edit_roster(&p, &id, entries).await?)))
}

/// The period of a workload query.
#[derive(Deserialize)]
pub struct Period {
    /// Start (RFC 3339); default `to` minus 24 hours.
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339); default now.
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    /// `(from, to)` with the defaults.
    pub fn bounds(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let to = self.to.unwrap_or_else(Utc::now);
        (self.from.unwrap_or(to - chrono::Duration::hours(24)), to)
    }
}

/// `GET /api/v1/centres/{id}/workload?from=&to=`.
pub async fn workload(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    Query(q): Query<Period>,
) -> Result<Json<Value>, Problem> {
    let (from, to) = q.bounds();
    let w = st.gate.centre_workload(&p, &id, from, to).await?;
    Ok(Json(
        json!({ "centre": id, "from": from, "to": to, "workload": w }),
    ))
}
