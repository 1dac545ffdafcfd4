//! The alert page (issue 18): `/ui/alerts` — for the chest-pain group's doctors, the open
//! alerts they are recipients of (the 12-lead trace, the patient, the sending institution,
//! the group's phone, the escalation step, a sound when a new one arrives) with the decision
//! buttons; for the sending institution's doctors, the alerts its ECGs and results raised
//! ("alert sent, waiting for the cardiologist", then the decision). Live on `/ui/events`
//! (alert events carry no patient data; the page fetches its rows again, audited). Decided and
//! audited by the gate (`huren_gate::alerts`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use huren_alerting::Decision;
use huren_gate::alerts::{AlertAct, AlertItem};
use maud::{html, Markup};
use serde::Deserialize;

use crate::i18n::Lang;
use crate::pages::{layout, mask, person_name};
use crate::{
    csrf_ok, csrf_refused, html as page, problem_page, same_origin, Signed, Web, WebState,
};

/// The alert page's routes.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/ui/alerts", get(alerts))
        .route(
            "/ui/alerts/{id}/{act}",
            post(act).layer(axum::extract::DefaultBodyLimit::max(crate::FORM_BODY_LIMIT)),
        )
        .route("/ui/alerts/{id}/trace.svg", get(trace))
}

/// The phrase in the page's language.
pub(crate) fn tr(lang: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// `MM-DD HH:MM:SS` in Shanghai.
pub(crate) fn hms(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%m-%d %H:%M:%S")
        .to_string()
}

fn decision_label(lang: Lang, d: &str) -> &'static str {
    match d {
        "stemi_transfer" => tr(lang, "确认STEMI，立即转运", "STEMI confirmed: transfer now"),
        "not_stemi" => tr(lang, "非STEMI", "Not STEMI"),
        "need_more" => tr(lang, "需补充检查", "Need more"),
        _ => tr(lang, "已复述确认", "Read back"),
    }
}

fn kind_label(lang: Lang, k: &str) -> &'static str {
    match k {
        "stemi" => tr(lang, "STEMI 预警", "STEMI alert"),
        _ => tr(lang, "危急值", "Critical value"),
    }
}

fn rows(lang: Lang, s: &Signed, items: &[AlertItem]) -> Markup {
    html! {
        @if items.is_empty() {
            p.hint #no-alerts { (tr(lang, "没有预警。", "No alert.")) }
        }
        @for a in items {
            section.card.alert data-alert=(a.id) data-state=(a.state) data-open=(if a.state == "open" { "1" } else { "0" }) {
                h2 {
                    span class=(if a.state == "open" { "prio prio-critical" } else { "prio prio-routine" }) { (kind_label(lang, a.kind)) }
                    " " (a.summary)
                }
                p {
                    @if let Some(n) = &a.patient_name { (person_name(n)) " " }
                    span.hint { (a.patient.as_deref().and_then(|p| p.split_once(':')).map(|(_, l)| mask(l)).unwrap_or_default()) }
                    " · " (tr(lang, "送检机构", "From")) ": " span.from { (a.institution_name) @if a.institution_name != a.institution { " (" (a.institution) ")" } }
                    @if let Some(ph) = &a.institution_phone { " " span.from-phone { "☎ " (ph) } }
                    " · " (tr(lang, "发出", "Raised")) " " (hms(a.raised_at))
                }
                p.hint {
                    (a.group_name) " (" (a.group_institution) ")"
                    @if let Some(ph) = &a.group_phone { " · ☎ " (ph) }
                    " · " (tr(lang, "升级步骤", "Step")) " " (a.step) " " (hms(a.step_at))
                }
                p.state {
                    @if let Some(ack) = &a.acknowledged {
                        strong.decision { (decision_label(lang, ack["decision"].as_str().unwrap_or(""))) }
                        " · " (ack["by"].as_str().unwrap_or("")) " "
                        (ack["at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).map(hms).unwrap_or_default())
                        @if let Some(n) = ack["note"].as_str().filter(|n| !n.is_empty()) { " · " span.note { (n) } }
                    } @else if let Some(c) = &a.cancelled {
                        (tr(lang, "已取消：", "Cancelled: ")) (c["reason"].as_str().unwrap_or(""))
                    } @else {
                        span.waiting { (tr(lang, "预警已发出，等待心内科医生确认", "Alert sent, waiting for the cardiologist")) }
                    }
                }
                @if a.kind == "stemi" {
                    p { a.green href=(format!("/ui/referrals#c-{}", a.id.strip_prefix("a-").unwrap_or(&a.id))) { (tr(lang, "胸痛绿色通道：时间节点与转诊", "Green channel: timings and referral")) } }
                    img.alert-trace src=(format!("/ui/alerts/{}/trace.svg", a.id)) alt=(tr(lang, "12导联心电图", "12-lead ECG")) loading="lazy";
                }
                @if a.may_acknowledge {
                    form.ack method="post" action=(format!("/ui/alerts/{}/ack", a.id)) {
                        input type="hidden" name="csrf" value=(s.csrf);
                        label { (tr(lang, "意见", "Note")) " " input type="text" name="note" size="40"; }
                        @for d in decisions(a.kind) {
                            " " button type="submit" name="decision" value=(d.as_str()) class=(format!("decide {}", d.as_str())) { (decision_label(lang, d.as_str())) }
                        }
                    }
                }
            }
        }
    }
}

fn decisions(kind: &str) -> &'static [Decision] {
    match kind {
        "stemi" => huren_alerting::AlertKind::Stemi.decisions(),
        _ => huren_alerting::AlertKind::LabCritical.decisions(),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    frag: Option<String>,
}

async fn alerts(State(st): State<WebState>, w: Web, Query(q): Query<AlertsQuery>) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    // Open and answered alike, newest first: the sender needs to see the decision, the
    // cardiologist what they answered.
    let items = match st.gate.alerts(&s.principal, false).await {
        Ok(i) => i,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let lang = w.lang;
    let body = rows(lang, &s, &items);
    if q.frag.is_some() {
        return page(StatusCode::OK, body);
    }
    let title = tr(lang, "胸痛预警", "Alerts");
    page(
        StatusCode::OK,
        layout(
            lang,
            title,
            Some(&s),
            "/ui/alerts",
            html! {
                section.card #live-list data-frag="/ui/alerts?frag=1" data-alerts="1" {
                    h1 { (title) " " span #live.hint {} }
                    div #rows { (body) }
                }
            },
        ),
    )
}

/// `POST /ui/alerts/{id}/ack|cancel`: CSRF-checked; the gate decides and audits.
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
    let (mut csrf, mut decision, mut note) = (String::new(), String::new(), String::new());
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = v.into_owned(),
            "decision" => decision = v.into_owned(),
            "note" | "reason" => note = v.into_owned(),
            _ => {}
        }
    }
    if !same_origin(&headers) || !csrf_ok(&s, &csrf) {
        return csrf_refused(w.lang);
    }
    let a = match act.as_str() {
        "ack" => match Decision::parse(&decision) {
            Some(decision) => AlertAct::Acknowledge { decision, note },
            None => {
                return problem_page(
                    w.lang,
                    Some(&s),
                    huren_gate::Problem::new(
                        StatusCode::BAD_REQUEST,
                        "bad decision",
                        "choose a decision",
                    ),
                )
            }
        },
        "cancel" => AlertAct::Cancel(note),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match st.gate.alert_act(&s.principal, &id, a).await {
        Ok(_) => Redirect::to("/ui/alerts").into_response(),
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

async fn trace(State(st): State<WebState>, w: Web, Path(id): Path<String>) -> Response {
    let Some(s) = &w.signed else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match st
        .gate
        .alert_report(&s.principal, &id, "read_ecg_trace")
        .await
    {
        Ok(read) => {
            let hash = read.meta.hash.to_string();
            crate::trace_response(&read, &hash)
        }
        Err(p) => p.into_response(),
    }
}
