//! Green-channel referrals and chest-pain timings (issue 18, docs/chest-pain.md):
//!
//! - `GET /api/v1/referrals?direction=all|incoming|outgoing` — the chest-pain cases the caller
//!   sees (a case opens with every STEMI alert; its referral, once made, is the green
//!   channel), newest first;
//! - `POST /api/v1/referrals` `{"alert","reason","to"?,"expected_arrival"?}` — refer the
//!   patient of a STEMI alert (the ECG and the last 72 h of results attached);
//! - `GET /api/v1/referrals/{id}`; `POST /api/v1/referrals/{id}/stamps`
//!   `{"milestone","at"?}` — one click stamps door-in, decision to transfer, door-out,
//!   arrival, cath-lab activation, first medical contact or onset; `POST
//!   /api/v1/referrals/{id}/cancel` `{"reason"}`;
//! - `GET /api/v1/kpi/chest-pain?from=&to=` (the KPIs, monthly and overall, per institution
//!   and responder) and `GET /api/v1/kpi/chest-pain/export.csv|export.json` (one row per case,
//!   columns after the China Chest Pain Center platform's time fields), for heads of
//!   department and the health commission.
//!
//! Decided and audited by the gate ([`huren_gate::cases`]); an answer goes out only after the
//! case's event is durable.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use huren_chestpain::Milestone;
use huren_gate::cases::Direction;
use huren_gate::{record, Problem};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiState, Authed};

/// The zone months and dates are read in.
pub const KPI_TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn bad(title: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, title, detail.into())
}

/// The query of `GET /api/v1/referrals`.
#[derive(Deserialize)]
pub struct ListQuery {
    /// `all` (default), `incoming` or `outgoing`.
    pub direction: Option<String>,
}

/// `GET /api/v1/referrals?direction=…`: `{"referrals":[…]}`.
pub async fn list(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let direction = match q.direction.as_deref() {
        None | Some("") | Some("all") => Direction::All,
        Some("incoming") => Direction::Incoming,
        Some("outgoing") => Direction::Outgoing,
        Some(other) => {
            return Err(bad(
                "bad direction",
                format!(
                    "direction must be all, incoming or outgoing, not {:?}",
                    other.chars().take(20).collect::<String>()
                ),
            ))
        }
    };
    let items = st.gate.cases(&p, direction).await?;
    Ok(Json(json!({ "referrals": items })))
}

/// `GET /api/v1/referrals/{id}`: `{"referral":{…}}`.
pub async fn one(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let c = st.gate.case(&p, &id).await?;
    Ok(Json(json!({ "referral": c })))
}

fn time(s: &str, what: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad("bad time", format!("{what} must be an RFC 3339 time")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferBody {
    alert: String,
    reason: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    expected_arrival: Option<String>,
}

/// `POST /api/v1/referrals` with `{"alert","reason","to"?,"expected_arrival"?}`: 201 with
/// the case.
pub async fn refer(
    State(st): State<ApiState>,
    Authed(p): Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let b: ReferBody = crate::api::json_body(&body)?;
    let eta = b
        .expected_arrival
        .as_deref()
        .map(|t| time(t, "expected_arrival"))
        .transpose()?;
    if let Some(to) = &b.to {
        if st.gw.config.institution(to).is_none() {
            return Err(bad(
                "unknown institution",
                format!("{to:?} is not configured"),
            ));
        }
    }
    let c = st
        .gate
        .refer(&p, &b.alert, &b.reason, b.to.as_deref(), eta)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "referral": c }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StampBody {
    milestone: String,
    #[serde(default)]
    at: Option<String>,
}

/// `POST /api/v1/referrals/{id}/stamps` with `{"milestone","at"?}`: the case.
pub async fn stamp(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let b: StampBody = crate::api::json_body(&body)?;
    let m = Milestone::parse(&b.milestone)
        .filter(|m| m.entered())
        .ok_or_else(|| {
            let names: Vec<&str> = Milestone::ALL
                .iter()
                .filter(|m| m.entered())
                .map(|m| m.as_str())
                .collect();
            bad(
                "bad milestone",
                format!("milestone must be one of {}", names.join(", ")),
            )
        })?;
    let at = b.at.as_deref().map(|t| time(t, "at")).transpose()?;
    let c = st.gate.stamp_case(&p, &id, m, at).await?;
    Ok(Json(json!({ "referral": c })))
}

/// `POST /api/v1/referrals/{id}/cancel` with `{"reason"}`: the case.
pub async fn cancel(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let reason = crate::api::reason_body(&body)?;
    let c = st.gate.cancel_referral(&p, &id, &reason).await?;
    Ok(Json(json!({ "referral": c })))
}

/// The range of a KPI request.
#[derive(Deserialize)]
pub struct RangeQuery {
    /// Start: `YYYY-MM-DD` (midnight in Shanghai) or RFC 3339; default a year before `to`.
    pub from: Option<String>,
    /// End (exclusive): `YYYY-MM-DD` (the next midnight: the day is included) or RFC 3339;
    /// default now.
    pub to: Option<String>,
}

fn bound(s: &str, what: &str, end: bool) -> Result<DateTime<Utc>, Problem> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        return KPI_TIME_ZONE
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("bad date", format!("{what}: no such local time")));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(
                "bad date",
                format!("{what} must be YYYY-MM-DD or an RFC 3339 time"),
            )
        })
}

/// The `[from, to)` of a KPI request (400 for a bad or empty range).
pub fn range(q: &RangeQuery) -> Result<(DateTime<Utc>, DateTime<Utc>), Problem> {
    let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => bound(s, "to", true)?,
        None => Utc::now(),
    };
    let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => bound(s, "from", false)?,
        None => to - chrono::Duration::days(365),
    };
    if from >= to {
        return Err(bad("bad range", "from must be before to"));
    }
    Ok((from, to))
}

/// `GET /api/v1/kpi/chest-pain?from=&to=`: the KPI report (docs/chest-pain.md).
pub async fn kpi(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, Problem> {
    let (from, to) = range(&q)?;
    let report = kpi_report(&st, &p, from, to).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// The KPI report of the cases `p` may see in `[from, to)`; audited once (no patient: an
/// aggregate).
pub async fn kpi_report(
    st: &ApiState,
    p: &huren_access::Principal,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<huren_chestpain::KpiReport, Problem> {
    let cases = st.gate.kpi_cases(p, "kpi_chest_pain").await?;
    let report = huren_chestpain::report(&cases, from, to, KPI_TIME_ZONE, &st.gw.config.chest_pain);
    let mut rec = record(p, "kpi_chest_pain");
    rec.detail = json!({"from": from, "to": to, "cases": report.total.cases});
    st.audit(rec).await?;
    Ok(report)
}

/// `GET /api/v1/kpi/chest-pain/export.csv` and `export.json` (`?from=&to=`): one row per
/// case, de-identified (the case id links back inside huren).
pub async fn export(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(file): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, Problem> {
    let csv = match file.as_str() {
        "export.csv" => true,
        "export.json" => false,
        _ => return Err(Problem::new(StatusCode::NOT_FOUND, "not found", file)),
    };
    let (from, to) = range(&q)?;
    export_response(&st, &p, csv, from, to).await
}

/// The export of the cases `p` may see in `[from, to)`, CSV or JSON; audited once (no
/// patient: the export is de-identified). Shared with the web page's download.
pub async fn export_response(
    st: &ApiState,
    p: &huren_access::Principal,
    csv: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Response, Problem> {
    let mut cases = st.gate.kpi_cases(p, "kpi_export").await?;
    cases.retain(|c| {
        let i = c.index_time();
        from <= i && i < to
    });
    cases.sort_by(|a, b| a.index_time().cmp(&b.index_time()).then(a.id.cmp(&b.id)));
    let mut rec = record(p, "kpi_export");
    rec.detail = json!({"format": if csv {"csv"} else {"json"}, "from": from, "to": to, "cases": cases.len()});
    if csv {
        let text = huren_chestpain::export_csv(&cases, KPI_TIME_ZONE).map_err(|e| {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "export", e.to_string())
        })?;
        st.audit(rec).await?;
        let name = format!(
            "attachment; filename=\"chest-pain-{}-{}.csv\"",
            from.with_timezone(&KPI_TIME_ZONE).format("%Y%m%d"),
            to.with_timezone(&KPI_TIME_ZONE).format("%Y%m%d")
        );
        // A byte-order mark, so spreadsheet programs read the Chinese headers as UTF-8.
        let body = format!("\u{feff}{text}");
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, name),
            ],
            body,
        )
            .into_response())
    } else {
        let rows = huren_chestpain::export_rows(&cases, KPI_TIME_ZONE);
        let columns: Vec<Value> = huren_chestpain::export_columns()
            .iter()
            .map(|c| json!({"key": c.key, "ccpc": c.ccpc, "milestone": c.milestone.map(|m| m.as_str()), "note": c.note}))
            .collect();
        st.audit(rec).await?;
        Ok(Json(json!({"columns": columns, "rows": rows})).into_response())
    }
}
