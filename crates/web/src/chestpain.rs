//! The green channel and the chest-pain dashboard (issue 18):
//!
//! - `/ui/referrals` — the chest-pain cases a clinician sees (the sender's, the PCI group's,
//!   the receiving hospital's incoming patients): the patient, the decision, every milestone
//!   with its time and who stamped it, the referral with its expected arrival and attached
//!   results, a one-click button for each milestone the caller may stamp now, and the form
//!   that starts or withdraws the referral;
//! - `/ui/kpi` — for heads of department and the health commission: the four KPIs per month
//!   as SVG charts (median bar, p90 tick, the threshold as a dashed line, the share within),
//!   the tables per month, institution and responder, and the CCPC export
//!   (`/ui/kpi/export.csv|json`).
//!
//! Every view and act is decided and audited by the gate (`huren_gate::cases`); posts are
//! CSRF-checked.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use huren_chestpain::{Kpi, KpiReport, Milestone, Stats};
use huren_gate::cases::{CaseItem, Direction};
use maud::{html, Markup};

use crate::i18n::Lang;
use crate::pages::{layout, mask, person_name};
use crate::{
    csrf_ok, csrf_refused, html as page, problem_page, same_origin, Signed, Web, WebState,
};

/// The routes.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/ui/referrals", get(referrals))
        .route(
            "/ui/referrals/{id}/{act}",
            post(act).layer(axum::extract::DefaultBodyLimit::max(crate::FORM_BODY_LIMIT)),
        )
        .route("/ui/kpi", get(kpi))
        .route("/ui/kpi/{file}", get(export))
}

use crate::alerting::{hms as local, tr};

fn label(lang: Lang, m: Milestone) -> &'static str {
    match lang {
        Lang::Zh => m.label_zh(),
        Lang::En => match m {
            Milestone::SymptomOnset => "Symptom onset",
            Milestone::FirstMedicalContact => "First medical contact",
            Milestone::EcgAcquired => "ECG acquired",
            Milestone::EcgReceived => "ECG received",
            Milestone::AlertRaised => "Alert raised",
            Milestone::AlertDelivered => "Alert on a screen",
            Milestone::AlertEscalated => "Alert escalated",
            Milestone::AlertAcknowledged => "Alert acknowledged",
            Milestone::Diagnosis => "ECG diagnosis",
            Milestone::CathlabActivation => "Cath lab activated",
            Milestone::DoorIn => "Door-in",
            Milestone::TransferDecision => "Decision to transfer",
            Milestone::DoorOut => "Door-out",
            Milestone::Arrival => "Arrival at the PCI hospital",
        },
    }
}

fn kpi_label(lang: Lang, k: Kpi) -> &'static str {
    match lang {
        Lang::Zh => k.label_zh(),
        Lang::En => match k {
            Kpi::EcgToDiagnosis => "First ECG → diagnosis",
            Kpi::AlertToAck => "Alert → acknowledgement",
            Kpi::FmcToEcg => "First medical contact → first ECG",
            Kpi::DoorInDoorOut => "Door-in → door-out",
        },
    }
}

fn case_card(lang: Lang, s: &Signed, c: &CaseItem) -> Markup {
    let stamp_of = |m: Milestone| c.stamps.get(m.as_str());
    html! {
        section.card.case id=(c.id) data-case=(c.id) {
            h2 {
                span.prio.prio-critical { "STEMI" }
                " "
                @if let Some(n) = &c.patient_name { (person_name(n)) " " }
                span.hint { (c.patient.as_deref().and_then(|p| p.split_once(':')).map(|(_, l)| mask(l)).unwrap_or_default()) }
            }
            p.hint {
                (c.institution) " → " (c.pci_institution)
                " · " (tr(lang, "预警", "Alert")) " " a href="/ui/alerts" { (c.alert) }
                @if let Some(d) = c.decision { " · " strong.decision { (d) } }
            }
            @if let Some(r) = &c.referral {
                p.referral {
                    strong { (tr(lang, "绿色通道转诊", "Green-channel referral")) }
                    " → " (r.to_institution) " · " (r.reason)
                    " · " (r.by) " " (local(r.at))
                    @if let Some(eta) = r.expected_arrival { " · " (tr(lang, "预计到达", "Expected")) " " (local(eta)) }
                    " · " (r.attachments.len()) " " (tr(lang, "份报告附上", "reports attached"))
                }
            }
            table.milestones {
                @for m in Milestone::ALL {
                    @if let Some(st) = stamp_of(m) {
                        tr data-milestone=(m.as_str()) {
                            td { (label(lang, m)) }
                            td.t { (st["at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).map(local).unwrap_or_default()) }
                            td.hint { (st["by"].as_str().unwrap_or("")) " " (st["source"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            @if !c.may_stamp.is_empty() {
                form.stamps method="post" action=(format!("/ui/referrals/{}/stamp", c.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    @for m in &c.may_stamp {
                        @if let Some(m) = Milestone::parse(m) {
                            button type="submit" name="milestone" value=(m.as_str()) class=(format!("stamp {}", m.as_str())) { (label(lang, m)) }
                            " "
                        }
                    }
                }
            }
            @if c.referral.is_none() {
                form.refer method="post" action=(format!("/ui/referrals/{}/refer", c.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="alert" value=(c.alert);
                    label { (tr(lang, "转诊原因", "Reason")) " " input type="text" name="reason" size="30" required; }
                    " "
                    label { (tr(lang, "预计到达（分钟后）", "Expected in (minutes)")) " " input type="number" name="eta_min" min="0" max="1440" size="4"; }
                    " " button type="submit" { (tr(lang, "启动绿色通道转诊", "Start the green-channel referral")) }
                }
            } @else {
                form.unrefer method="post" action=(format!("/ui/referrals/{}/cancel", c.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { (tr(lang, "撤销原因", "Reason")) " " input type="text" name="reason" size="20" required; }
                    " " button type="submit" { (tr(lang, "撤销转诊", "Withdraw the referral")) }
                }
            }
        }
    }
}

async fn referrals(State(st): State<WebState>, w: Web) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let items = match st.api.gate.cases(&s.principal, Direction::All).await {
        Ok(i) => i,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let lang = w.lang;
    let title = tr(lang, "胸痛绿色通道", "Chest-pain green channel");
    page(
        StatusCode::OK,
        layout(
            lang,
            title,
            Some(&s),
            "/ui/referrals",
            html! {
                section.card {
                    h1 { (title) }
                    @if items.is_empty() {
                        p.hint #no-cases { (tr(lang, "没有胸痛病例。", "No chest-pain case.")) }
                    }
                }
                @for c in &items { (case_card(lang, &s, c)) }
            },
        ),
    )
}

/// `POST /ui/referrals/{id}/stamp|refer|cancel`: CSRF-checked; the gate decides and audits.
async fn act(
    State(st): State<WebState>,
    w: Web,
    headers: HeaderMap,
    Path((id, act)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let mut f = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        f.insert(k.into_owned(), v.into_owned());
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if !same_origin(&headers) || !csrf_ok(&s, get("csrf")) {
        return csrf_refused(w.lang);
    }
    let bad = |detail: &str| {
        problem_page(
            w.lang,
            Some(&s),
            huren_gate::Problem::new(StatusCode::BAD_REQUEST, "bad request", detail.to_string()),
        )
    };
    let gate = &st.api.gate;
    let done = match act.as_str() {
        "stamp" => match Milestone::parse(get("milestone")).filter(|m| m.entered()) {
            Some(m) => gate.stamp_case(&s.principal, &id, m, None).await,
            None => return bad("choose a milestone"),
        },
        "refer" => {
            let eta = match get("eta_min").trim() {
                "" => None,
                n => match n.parse::<i64>() {
                    Ok(n) if (0..=1440).contains(&n) => {
                        Some(Utc::now() + chrono::Duration::minutes(n))
                    }
                    _ => return bad("the expected arrival is 0 to 1440 minutes from now"),
                },
            };
            gate.refer(&s.principal, get("alert"), get("reason"), None, eta)
                .await
        }
        "cancel" => gate.cancel_referral(&s.principal, &id, get("reason")).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match done {
        Ok(c) => Redirect::to(&format!("/ui/referrals#{}", c.id)).into_response(),
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

fn minutes(s: Option<f64>) -> String {
    s.map(|v| format!("{:.1}", v / 60.0))
        .unwrap_or_else(|| "—".into())
}

fn share(s: &Stats) -> String {
    s.within_share
        .map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// The monthly chart of one KPI: the median as a bar, the p90 as a tick, the threshold as a
/// dashed line, the share within under each month. Deterministic text (tested).
pub fn kpi_svg(lang: Lang, k: Kpi, months: &[(String, &Stats)], threshold_min: u32) -> Markup {
    let (w, h, left, bottom, top) = (560.0_f64, 200.0_f64, 40.0_f64, 36.0_f64, 14.0_f64);
    let max = months
        .iter()
        .filter_map(|(_, s)| s.p90_s.or(s.median_s))
        .map(|v| v / 60.0)
        .fold(f64::from(threshold_min), f64::max)
        * 1.15;
    let y = |min: f64| top + (h - top - bottom) * (1.0 - (min / max).clamp(0.0, 1.0));
    let n = months.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let ty = y(f64::from(threshold_min));
    let fmt = |v: f64| format!("{v:.1}");
    html! {
        svg.kpi xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(kpi_label(lang, k)) data-kpi=(k.as_str()) {
            line x1=(fmt(left)) y1=(fmt(top)) x2=(fmt(left)) y2=(fmt(h - bottom)) stroke="#888" {}
            line x1=(fmt(left)) y1=(fmt(h - bottom)) x2=(fmt(w - 4.0)) y2=(fmt(h - bottom)) stroke="#888" {}
            text x="2" y=(fmt(top + 4.0)) font-size="10" { (fmt(max)) }
            text x="2" y=(fmt(h - bottom)) font-size="10" { "0" }
            line.threshold x1=(fmt(left)) y1=(fmt(ty)) x2=(fmt(w - 4.0)) y2=(fmt(ty)) stroke="#c0392b" stroke-dasharray="4 3" {}
            text x=(fmt(w - 4.0)) y=(fmt(ty - 3.0)) font-size="10" text-anchor="end" fill="#c0392b" { (threshold_min) " min" }
            @for (i, (month, s)) in months.iter().enumerate() {
                @let x = left + slot * i as f64 + slot * 0.2;
                @let bw = slot * 0.6;
                @if let Some(m) = s.median_s {
                    @let yy = y(m / 60.0);
                    rect.median x=(fmt(x)) y=(fmt(yy)) width=(fmt(bw)) height=(fmt(h - bottom - yy)) fill=(if m / 60.0 <= f64::from(threshold_min) { "#2e86c1" } else { "#e67e22" }) {
                        title { (month) " " (tr(lang, "中位数", "median")) " " (fmt(m / 60.0)) " min" }
                    }
                }
                @if let Some(p) = s.p90_s {
                    @let yy = y(p / 60.0);
                    line.p90 x1=(fmt(x)) y1=(fmt(yy)) x2=(fmt(x + bw)) y2=(fmt(yy)) stroke="#222" stroke-width="2" {}
                }
                text x=(fmt(x + bw / 2.0)) y=(fmt(h - bottom + 12.0)) font-size="10" text-anchor="middle" { (month) }
                text x=(fmt(x + bw / 2.0)) y=(fmt(h - bottom + 24.0)) font-size="10" text-anchor="middle" { (share(s)) " (" (s.n) ")" }
            }
        }
    }
}

fn stats_row(name: &str, s: &Stats) -> Markup {
    html! {
        tr {
            td { (name) }
            td.n { (s.n) }
            td.n { (minutes(s.mean_s)) }
            td.n { (minutes(s.median_s)) }
            td.n { (minutes(s.p90_s)) }
            td.n { (share(s)) }
            td.n { (s.missing) }
            td.n { (s.inconsistent) }
        }
    }
}

fn stats_head(lang: Lang, first: &str) -> Markup {
    html! {
        tr {
            th { (first) }
            th { "n" }
            th { (tr(lang, "均值(分)", "mean (min)")) }
            th { (tr(lang, "中位数", "median")) }
            th { "p90" }
            th { (tr(lang, "达标率", "within")) }
            th { (tr(lang, "缺失", "missing")) }
            th { (tr(lang, "时间矛盾", "inconsistent")) }
        }
    }
}

fn dashboard(lang: Lang, r: &KpiReport, query: &str) -> Markup {
    html! {
        p.hint {
            (tr(lang, "病例", "Cases")) " " strong #kpi-cases { (r.total.cases) }
            " · " (local(r.from)) " – " (local(r.to)) " (" (r.time_zone) ")"
            " · " a #export-csv href=(format!("/ui/kpi/export.csv{query}")) { "CSV" }
            " · " a href=(format!("/ui/kpi/export.json{query}")) { "JSON" }
        }
        @for k in Kpi::ALL {
            @let months: Vec<(String, &Stats)> = r.months.iter().filter_map(|(m, p)| p.kpis.get(&k).map(|s| (m.clone(), &s.overall))).collect();
            section.card.kpi-card data-kpi=(k.as_str()) {
                h2 { (kpi_label(lang, k)) " " span.hint { "≤ " (r.thresholds.minutes(k)) " min" } }
                (kpi_svg(lang, k, &months, r.thresholds.minutes(k)))
                @if let Some(t) = r.total.kpis.get(&k) {
                    table.kpi-table {
                        (stats_head(lang, tr(lang, "月份", "Month")))
                        @for (m, s) in &months { (stats_row(m, s)) }
                        (stats_row(tr(lang, "合计", "Total"), &t.overall))
                    }
                    details {
                        summary { (tr(lang, "按机构、按应答医生", "By institution, by responder")) }
                        table.kpi-table {
                            (stats_head(lang, tr(lang, "机构", "Institution")))
                            @for (i, s) in &t.by_institution { (stats_row(i, s)) }
                        }
                        table.kpi-table {
                            (stats_head(lang, tr(lang, "应答医生", "Responder")))
                            @for (i, s) in &t.by_responder { (stats_row(i, s)) }
                        }
                    }
                }
            }
        }
    }
}

async fn kpi(
    State(st): State<WebState>,
    w: Web,
    Query(q): Query<huren_api::cases::RangeQuery>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let (from, to) = match huren_api::cases::range(&q) {
        Ok(r) => r,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let report = match huren_api::cases::kpi_report(&st.api, &s.principal, from, to).await {
        Ok(r) => r,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let lang = w.lang;
    let query = match (&q.from, &q.to) {
        (None, None) => String::new(),
        _ => format!(
            "?from={}&to={}",
            urlenc(q.from.as_deref().unwrap_or("")),
            urlenc(q.to.as_deref().unwrap_or(""))
        ),
    };
    let title = tr(lang, "胸痛中心质控指标", "Chest-pain centre KPIs");
    page(
        StatusCode::OK,
        layout(
            lang,
            title,
            Some(&s),
            "/ui/kpi",
            html! {
                section.card {
                    h1 { (title) }
                    form.range method="get" action="/ui/kpi" {
                        label { (tr(lang, "自", "From")) " " input type="date" name="from" value=(q.from.as_deref().unwrap_or("")); }
                        " "
                        label { (tr(lang, "至", "To")) " " input type="date" name="to" value=(q.to.as_deref().unwrap_or("")); }
                        " " button type="submit" { (tr(lang, "查询", "Show")) }
                    }
                    (dashboard(lang, &report, &query))
                }
            },
        ),
    )
}

fn urlenc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn export(
    State(st): State<WebState>,
    w: Web,
    Path(file): Path<String>,
    Query(q): Query<huren_api::cases::RangeQuery>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let csv = match file.as_str() {
        "export.csv" => true,
        "export.json" => false,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let (from, to) = match huren_api::cases::range(&q) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    match huren_api::cases::export_response(&st.api, &s.principal, csv, from, to).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(n: usize, median: f64, p90: f64, share: f64) -> Stats {
        Stats {
            n,
            missing: 0,
            inconsistent: 0,
            mean_s: Some(median),
            median_s: Some(median),
            p90_s: Some(p90),
            within: 0,
            within_share: Some(share),
        }
    }

    #[test]
    fn the_chart_draws_each_month_the_threshold_and_is_deterministic() {
        let a = stats(4, 300.0, 720.0, 0.75);
        let b = stats(2, 900.0, 960.0, 0.0);
        let months = vec![("2026-10".to_string(), &a), ("2026-11".to_string(), &b)];
        let svg = kpi_svg(Lang::Zh, Kpi::AlertToAck, &months, 10).into_string();
        assert_eq!(
            svg,
            kpi_svg(Lang::Zh, Kpi::AlertToAck, &months, 10).into_string()
        );
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"p90\"").count(), 2);
        assert!(svg.contains("stroke-dasharray"), "the threshold line");
        assert!(svg.contains("75% (4)") && svg.contains("0% (2)"), "{svg}");
        // 5 min is within 10 (blue); 15 min is not (orange).
        assert!(svg.contains("#2e86c1") && svg.contains("#e67e22"));
        let empty = kpi_svg(Lang::En, Kpi::DoorInDoorOut, &[], 30).into_string();
        assert!(empty.contains("30 min") && !empty.contains("<rect"));
    }
}
