//! The reading centre's pages (issue 17): the reader's live worklist (`/ui/worklist`), the
//! reading page of one task (`/ui/task/{id}`: the trace beside the patient's previous ECG,
//! the cart's measurements and statements, recent troponin and potassium, the statement
//! catalogue, claim, release and sign), and the sending institution's page (`/ui/sent`: each
//! ECG it sent, waiting / being read by whom / signed with the diagnosis, and the times).
//! Both lists follow `/ui/events` (the task event stream, no patient data in it) and fetch
//! their rows again — through the gate, audited — when a change arrives. Everything is
//! decided and audited by the gate (`huren_gate::worklist`); signing is the API's
//! (`huren_api::worklist::sign_and_queue`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use huren_gate::worklist::{SentItem, TaskAct, TaskView, WorklistItem};
use huren_model::{LabObservation, Report};
use huren_workflow::catalogue::{Group, ECG_STATEMENTS, ECG_TEMPLATES};
use maud::{html, Markup};
use serde::Deserialize;

use crate::i18n::Lang;
use crate::pages::{layout, mask, person_name};
use crate::{
    csrf_ok, csrf_refused, html as page, problem_page, same_origin, Signed, Web, WebState,
};

/// The reading pages' routes.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/ui/worklist", get(worklist))
        .route("/ui/sent", get(sent))
        .route("/ui/events", get(events))
        .route("/ui/task/{id}", get(task))
        .route(
            "/ui/task/{id}/{act}",
            post(act).layer(axum::extract::DefaultBodyLimit::max(crate::FORM_BODY_LIMIT)),
        )
        .route("/ui/task/{id}/trace/{hash}", get(trace))
        .route("/ui/task/{id}/img/{hash}/{uid}", get(image))
        .route("/ui/centre/{id}", get(centre))
        .route(
            "/ui/centre/{id}/roster",
            post(edit_roster).layer(axum::extract::DefaultBodyLimit::max(crate::FORM_BODY_LIMIT)),
        )
}

fn tr(lang: Lang, zh: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    /// `1`: the rows only (the page's script fetches them after a change).
    frag: Option<String>,
}

#[derive(Deserialize)]
struct TaskQuery {
    /// A message after an act (`claimed`, `released`, …).
    done: Option<String>,
}

fn hm(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%m-%d %H:%M")
        .to_string()
}

fn priority_label(lang: Lang, p: &str) -> &'static str {
    match p {
        "critical" => tr(lang, "危急", "critical"),
        "urgent" => tr(lang, "紧急", "urgent"),
        _ => tr(lang, "常规", "routine"),
    }
}

fn state_label(lang: Lang, s: &str) -> &'static str {
    match s {
        "scheduled" => tr(lang, "待阅", "waiting"),
        "in_progress" => tr(lang, "阅读中", "being read"),
        "completed" => tr(lang, "已签发", "signed"),
        _ => tr(lang, "已取消", "cancelled"),
    }
}

fn kind_label(lang: Lang, k: &str) -> &'static str {
    match k {
        "ecg" => tr(lang, "心电图", "ECG"),
        _ => tr(lang, "影像", "Imaging"),
    }
}

fn patient_cell(i: &WorklistItem) -> Markup {
    let local = i
        .patient
        .as_deref()
        .and_then(|p| p.split_once(':'))
        .map(|(_, l)| mask(l))
        .unwrap_or_default();
    html! {
        @if let Some(n) = &i.patient_name { (person_name(n)) " " }
        span.hint { (local) }
    }
}

/// The countdown to a task's due time (the script ticks it every second).
fn countdown(lang: Lang, i: &WorklistItem) -> Markup {
    let r = i.remaining_secs;
    let text = if r < 0 {
        format!("{} {}:{:02}", tr(lang, "超时", "overdue"), -r / 60, -r % 60)
    } else {
        format!("{}:{:02}", r / 60, r % 60)
    };
    html! {
        span.countdown.overdue[i.overdue] data-due=(i.due_at.to_rfc3339()) data-overdue=(tr(lang, "超时", "overdue")) { (text) }
    }
}

fn worklist_rows(lang: Lang, s: &Signed, items: &[WorklistItem]) -> Markup {
    html! {
        @if items.is_empty() {
            p.hint #wl-empty { (tr(lang, "没有待阅任务。", "No task waiting.")) }
        } @else {
            table.obs #worklist-table {
                thead { tr {
                    th scope="col" { (tr(lang, "优先级", "Priority")) }
                    th scope="col" { (tr(lang, "类型", "Kind")) }
                    th scope="col" { (tr(lang, "患者", "Patient")) }
                    th scope="col" { (tr(lang, "送检机构", "From")) }
                    th scope="col" { (tr(lang, "收到", "Received")) }
                    th scope="col" { (tr(lang, "剩余时间", "Due in")) }
                    th scope="col" { (tr(lang, "状态", "State")) }
                    th scope="col" {}
                } }
                tbody {
                    @for i in items {
                        tr.task.overdue[i.overdue] data-task=(i.id) data-priority=(i.priority) {
                            td { span class=(format!("prio prio-{}", i.priority)) { (priority_label(lang, i.priority)) } }
                            td { (kind_label(lang, i.kind)) }
                            td { (patient_cell(i)) }
                            td { (i.institution) }
                            td { (hm(i.created_at)) }
                            td { (countdown(lang, i)) }
                            td.state {
                                (state_label(lang, i.state))
                                @if let Some(by) = &i.claimed_by { " · " span.reader { (by) } }
                            }
                            td {
                                @if i.claimed_by.as_deref() == Some(s.principal.id.as_str()) {
                                    a.open href=(format!("/ui/task/{}", i.id)) { (tr(lang, "继续阅读", "Continue")) }
                                } @else if i.claimed_by.is_none() {
                                    form.inline method="post" action=(format!("/ui/task/{}/claim", i.id)) {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        button.claim type="submit" { (tr(lang, "认领", "Claim")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn worklist(State(st): State<WebState>, w: Web, Query(q): Query<ListQuery>) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let (items, open) = match st
        .gate
        .worklist(&s.principal, huren_gate::worklist::DEFAULT_WORKLIST)
        .await
    {
        Ok(i) => i,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let rows = html! {
        (worklist_rows(w.lang, &s, &items))
        @if open > items.len() {
            p.hint #wl-more { (format!("{} / {}", items.len(), open)) " " (tr(w.lang, "（按优先级与等待时间显示前面的任务）", "(the first in priority and waiting order)")) }
        }
    };
    if q.frag.is_some() {
        return page(StatusCode::OK, rows);
    }
    let lang = w.lang;
    let title = tr(lang, "阅片工作列表", "Reading worklist");
    page(
        StatusCode::OK,
        layout(
            lang,
            title,
            Some(&s),
            "/ui/worklist",
            html! {
                section.card #live-list data-frag="/ui/worklist?frag=1" {
                    h1 { (title) " " span #live.hint {} }
                    @let headed = st.gate.centres_headed(&s.principal);
                    @if !headed.is_empty() {
                        p.hint {
                            (tr(lang, "排班与工作量：", "Roster and workload: "))
                            @for c in &headed { a href=(format!("/ui/centre/{c}")) { (c) } " " }
                        }
                    }
                    div #rows { (rows) }
                }
            },
        ),
    )
}

fn sent_rows(lang: Lang, items: &[SentItem]) -> Markup {
    html! {
        @if items.is_empty() {
            p.hint { (tr(lang, "本机构还没有送检的心电图。", "Nothing sent for reading yet.")) }
        } @else {
            table.obs #sent-table {
                thead { tr {
                    th scope="col" { (tr(lang, "患者", "Patient")) }
                    th scope="col" { (tr(lang, "类型", "Kind")) }
                    th scope="col" { (tr(lang, "送出", "Sent")) }
                    th scope="col" { (tr(lang, "状态", "State")) }
                    th scope="col" { (tr(lang, "诊断", "Diagnosis")) }
                } }
                tbody {
                    @for i in items {
                        tr.task data-task=(i.item.id) data-state=(i.item.state) {
                            td { (patient_cell(&i.item)) }
                            td { (kind_label(lang, i.item.kind)) " · " (priority_label(lang, i.item.priority)) }
                            td { (hm(i.item.created_at)) }
                            td.state {
                                (state_label(lang, i.item.state))
                                @if let Some(by) = &i.item.claimed_by { " · " span.reader { (by) } }
                                @if let (Some(by), Some(at)) = (&i.signed_by, i.signed_at) {
                                    " · " span.reader { (by) } " " (hm(at))
                                }
                                @if i.item.state == "scheduled" || i.item.state == "in_progress" { " · " (countdown(lang, &i.item)) }
                            }
                            td.diagnosis {
                                @if let Some(c) = &i.cancelled { (tr(lang, "取消：", "Cancelled: ")) (c) }
                                @for (n, d) in i.diagnosis.iter().enumerate() {
                                    @if n > 0 { "；" }
                                    (d)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn sent(State(st): State<WebState>, w: Web, Query(q): Query<ListQuery>) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let items = match st.gate.sent_tasks(&s.principal).await {
        Ok(i) => i,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let rows = sent_rows(w.lang, &items);
    if q.frag.is_some() {
        return page(StatusCode::OK, rows);
    }
    let lang = w.lang;
    let title = tr(lang, "已发送的心电图", "ECGs sent for reading");
    page(
        StatusCode::OK,
        layout(
            lang,
            title,
            Some(&s),
            "/ui/sent",
            html! {
                section.card #live-list data-frag="/ui/sent?frag=1" {
                    h1 { (title) " " span #live.hint {} }
                    div #rows { (rows) }
                }
            },
        ),
    )
}

/// `GET /ui/events`: the task event stream of the signed-in user (the API's, by session).
async fn events(State(st): State<WebState>, w: Web, headers: HeaderMap) -> Response {
    let Some(s) = &w.signed else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match st.gate.task_events(&s.principal).await {
        Ok(scope) => {
            huren_api::worklist::task_stream(scope, huren_api::worklist::last_event_id(&headers))
                .into_response()
        }
        Err(p) => p.into_response(),
    }
}

/// Lab results a reader wants beside an ECG: troponin, potassium, CK-MB, BNP.
fn relevant(o: &LabObservation) -> bool {
    const WORDS: [&str; 12] = [
        "肌钙蛋白",
        "troponin",
        "tni",
        "tnt",
        "ctn",
        "钾",
        "potassium",
        "ck-mb",
        "ckmb",
        "肌酸激酶",
        "bnp",
        "钠尿肽",
    ];
    let name = o.name.as_deref().unwrap_or("").to_lowercase();
    let code = o.code.to_lowercase();
    WORDS.iter().any(|w| name.contains(w) || code.contains(w))
        || code == "k"
        || name == "k"
        || code.starts_with("2823-3")
}

fn ecg_when(r: &Report) -> String {
    r.ecg
        .as_deref()
        .and_then(|e| e.acquired_at.clone())
        .or_else(|| r.performed_at.clone())
        .map(|t| t.chars().take(16).collect::<String>().replace('T', " "))
        .unwrap_or_default()
}

fn measurements(r: &Report) -> Vec<(&'static str, Option<i32>, &'static str)> {
    let Some(e) = r.ecg.as_deref() else {
        return vec![];
    };
    let m = &e.measurements;
    vec![
        ("HR", m.heart_rate_bpm, "bpm"),
        ("PR", m.pr_ms, "ms"),
        ("QRS", m.qrs_ms, "ms"),
        ("QT", m.qt_ms, "ms"),
        ("QTc", m.qtc_ms, "ms"),
        ("P axis", m.p_axis_deg, "°"),
        ("QRS axis", m.qrs_axis_deg, "°"),
        ("T axis", m.t_axis_deg, "°"),
    ]
}

fn task_page(lang: Lang, s: &Signed, v: &TaskView, done: Option<&str>) -> Markup {
    let i = &v.item;
    let (hash, r) = (&v.report.0, &v.report.1);
    let mine = i.claimed_by.as_deref() == Some(s.principal.id.as_str());
    let open = i.state == "scheduled" || i.state == "in_progress";
    let prior = v.prior.first();
    let now_m = measurements(r);
    let prior_m = prior.map(|(_, p)| measurements(p)).unwrap_or_default();
    let labs: Vec<(&Report, &LabObservation)> = v
        .labs
        .iter()
        .flat_map(|(_, l)| {
            l.lab
                .iter()
                .flat_map(|b| b.observations.iter())
                .filter(|o| relevant(o))
                .map(move |o| (l.as_ref(), o))
        })
        .take(12)
        .collect();
    html! {
        section.card #task data-task=(i.id) {
            h1 {
                span class=(format!("prio prio-{}", i.priority)) { (priority_label(lang, i.priority)) }
                " " (kind_label(lang, i.kind)) " · " (patient_cell(i))
            }
            p {
                (tr(lang, "送检机构", "From")) ": " (i.institution)
                " · " (tr(lang, "收到", "Received")) " " (hm(i.created_at))
                " · " (tr(lang, "剩余时间", "Due in")) " " (countdown(lang, i))
                " · " span #task-state { (state_label(lang, i.state)) @if let Some(by) = &i.claimed_by { " · " (by) } }
            }
            @if let Some(d) = done { p.ok role="status" #done { (d) } }
            @if open && !mine && i.claimed_by.is_none() {
                form.inline method="post" action=(format!("/ui/task/{}/claim", i.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.claim type="submit" { (tr(lang, "认领", "Claim")) }
                }
            }
            @if mine {
                form.inline method="post" action=(format!("/ui/task/{}/release", i.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.link type="submit" { (tr(lang, "放回列表", "Release")) }
                }
            }
        }
        @if r.ecg.is_some() {
            section.card.side #traces {
                figure #trace-current {
                    figcaption { (tr(lang, "本次", "This ECG")) " " (ecg_when(r)) }
                    img src=(format!("/ui/task/{}/trace/{}", i.id, hash)) alt=(tr(lang, "本次心电图", "This ECG"));
                }
                @if let Some((ph, p)) = prior {
                    figure #trace-prior {
                        figcaption { (tr(lang, "既往", "Previous")) " " (ecg_when(p)) " · " (p.patient.institution) }
                        img src=(format!("/ui/task/{}/trace/{}", i.id, ph)) alt=(tr(lang, "既往心电图", "Previous ECG"));
                    }
                } @else {
                    p.hint #no-prior { (tr(lang, "无既往心电图。", "No previous ECG.")) }
                }
            }
            section.card {
                h2 { (tr(lang, "测量值", "Measurements")) }
                table.obs #measurements {
                    thead { tr { th scope="col" {} th scope="col" { (tr(lang, "本次", "This")) } @if prior.is_some() { th scope="col" { (tr(lang, "既往", "Previous")) } } } }
                    tbody {
                        @for (n, (k, val, u)) in now_m.iter().enumerate() {
                            @let pv = prior_m.get(n).and_then(|x| x.1);
                            @if val.is_some() || pv.is_some() {
                                tr {
                                    th scope="row" { (k) }
                                    td { @if let Some(x) = val { (x) " " (u) } }
                                    @if prior.is_some() { td { @if let Some(x) = pv { (x) " " (u) } } }
                                }
                            }
                        }
                    }
                }
                h2 { (tr(lang, "机器诊断", "Machine statements")) }
                ul.statements #machine {
                    @for st in r.ecg.iter().flat_map(|e| e.statements.iter()) { li { (st.text) } }
                }
            }
        }
        @if let Some(im) = r.imaging.as_deref() {
            section.card #study {
                h2 { (im.modalities.join("/")) " " (im.description.as_deref().unwrap_or("")) }
                p.hint {
                    @if let Some(b) = (!im.body_parts.is_empty()).then(|| im.body_parts.join("/")) { (b) " · " }
                    @if let Some(d) = &im.study_date { (d) " · " }
                    (im.series.len()) (tr(lang, " 个序列", " series"))
                }
                @if let Some(sr) = &im.sr {
                    @if let Some(f) = &sr.findings { h3 { (tr(lang, "所见", "Findings")) } p.sr-text { (f) } }
                    @if let Some(x) = &sr.impression { h3 { (tr(lang, "印象", "Impression")) } p.sr-text { (x) } }
                }
                @let previews = crate::pick_previews(v.instances.clone(), r);
                @if !previews.is_empty() {
                    div.thumbs #task-previews {
                        @for (uid, label) in &previews {
                            figure {
                                img src=(format!("/ui/task/{}/img/{}/{}", i.id, hash, uid)) alt=(label) loading="lazy";
                                figcaption { (label) }
                            }
                        }
                    }
                }
            }
        }
        section.card #labs {
            h2 { (tr(lang, "近期检验（肌钙蛋白、钾等）", "Recent labs (troponin, potassium …)")) }
            @if labs.is_empty() {
                p.hint { (tr(lang, "医联体内无相关检验。", "None in the consortium.")) }
            } @else {
                table.obs {
                    tbody {
                        @for (l, o) in &labs {
                            tr {
                                td { (o.name.as_deref().unwrap_or(&o.code)) }
                                td { (o.value) " " (o.unit.as_deref().unwrap_or("")) " " (o.abnormal_flags_raw.as_deref().unwrap_or("")) }
                                td.hint { (o.observed_at.as_deref().or(l.specimen_collected_at.as_deref()).unwrap_or("").chars().take(16).collect::<String>()) " · " (l.patient.institution) }
                            }
                        }
                    }
                }
            }
        }
        @if mine {
            section.card #sign {
                h2 { (tr(lang, "诊断与签发", "Diagnosis and signature")) }
                form #sign-form method="post" action=(format!("/ui/task/{}/sign", i.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    @if i.kind == "ecg" {
                        p.templates {
                            (tr(lang, "模板：", "Templates: "))
                            @for t in ECG_TEMPLATES {
                                button.template type="button" data-statements=(t.statements.join(",")) { (if lang == Lang::Zh { t.name.0 } else { t.name.1 }) }
                                " "
                            }
                        }
                        @for g in [Group::Rhythm, Group::Conduction, Group::Ischaemia, Group::Other] {
                            fieldset.catalogue {
                                legend { (if lang == Lang::Zh { g.heading().0 } else { g.heading().1 }) }
                                @for st in ECG_STATEMENTS.iter().filter(|x| x.group == g) {
                                    label {
                                        input type="checkbox" name="statement" value=(st.zh) data-code=(st.code);
                                        " " (st.zh) @if lang == Lang::En { span.hint { " " (st.en) } }
                                    }
                                }
                            }
                        }
                    }
                    label { (tr(lang, "诊断意见（自由文本）", "Free text")) br; textarea name="text" rows="3" cols="60" {} }
                    p { button #sign-button type="submit" { (tr(lang, "签发", "Sign")) } }
                }
            }
        }
    }
}

async fn task(
    State(st): State<WebState>,
    w: Web,
    Path(id): Path<String>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let v = match st.gate.task_view(&s.principal, &id).await {
        Ok(v) => v,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let lang = w.lang;
    let done = q.done.as_deref().map(|d| match d {
        "claimed" => tr(lang, "已认领，请阅读并签发。", "Claimed: read and sign."),
        _ => tr(lang, "已完成。", "Done."),
    });
    page(
        StatusCode::OK,
        layout(
            lang,
            tr(lang, "阅读", "Reading"),
            Some(&s),
            "/ui/worklist",
            task_page(lang, &s, &v, done),
        ),
    )
}

/// `POST /ui/task/{id}/claim|release|sign`: CSRF-checked; the gate decides and audits.
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
    let mut csrf = String::new();
    let mut statements = Vec::new();
    let mut text = String::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = v.into_owned(),
            "statement" => statements.push(v.into_owned()),
            "text" => text = v.into_owned(),
            _ => {}
        }
    }
    if !same_origin(&headers) || !csrf_ok(&s, &csrf) {
        return csrf_refused(w.lang);
    }
    let done = match act.as_str() {
        "claim" => st
            .gate
            .task_act(&s.principal, &id, TaskAct::Claim)
            .await
            .map(|_| format!("/ui/task/{id}?done=claimed")),
        "release" => st
            .gate
            .task_act(&s.principal, &id, TaskAct::Release)
            .await
            .map(|_| "/ui/worklist".to_string()),
        "sign" => {
            huren_api::worklist::sign_and_queue(&st.api, &s.principal, &id, &statements, &text)
                .await
                .map(|_| "/ui/worklist".to_string())
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match done {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

async fn trace(
    State(st): State<WebState>,
    w: Web,
    Path((id, hash)): Path<(String, String)>,
) -> Response {
    let Some(s) = &w.signed else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match st
        .gate
        .task_report(&s.principal, &id, &hash, "read_ecg_trace")
        .await
    {
        Ok(read) => crate::trace_response(&read, &hash),
        Err(p) => p.into_response(),
    }
}

#[derive(Deserialize)]
struct CentreQuery {
    /// The workload period in days (1 or 7; default 1).
    days: Option<i64>,
    /// A message after an edit.
    done: Option<String>,
}

fn minutes(secs: Option<i64>) -> String {
    secs.map(|s| format!("{:.1}", s as f64 / 60.0))
        .unwrap_or_else(|| "—".into())
}

fn figures_row(name: &str, f: &huren_workflow::Figures) -> Markup {
    html! {
        tr {
            th scope="row" { (name) }
            td { (f.count) }
            td { (format!("{:.2}", f.per_hour)) }
            td { (minutes(f.median_secs)) }
            td { (minutes(f.p90_secs)) }
            td { (f.share_within_due.map(|x| format!("{:.0}%", x * 100.0)).unwrap_or_else(|| "—".into())) }
        }
    }
}

fn centre_page(
    lang: Lang,
    s: &Signed,
    r: &huren_gate::centre::CentreRoster,
    w: &huren_workflow::Workload,
    days: i64,
    msg: Option<(&str, bool)>,
) -> Markup {
    let head = html! {
        thead { tr {
            th scope="col" {}
            th scope="col" { (tr(lang, "签发数", "Signed")) }
            th scope="col" { (tr(lang, "每小时", "Per hour")) }
            th scope="col" { (tr(lang, "中位用时（分）", "Median (min)")) }
            th scope="col" { (tr(lang, "P90（分）", "p90 (min)")) }
            th scope="col" { (tr(lang, "按时签发", "Within due time")) }
        } }
    };
    html! {
        section.card #centre {
            h1 { (r.name) " · " (r.id) }
            p { (tr(lang, "所在机构", "Hosted by")) ": " (r.institution)
                " · " (tr(lang, "当前值班", "On duty now")) ": " span #on-duty { (r.on_duty_now.join("、")) } }
            @if let Some((m, ok)) = msg {
                @if ok { p.ok role="status" #done { (m) } } @else { p.error role="alert" #roster-error { (m) } }
            }
        }
        section.card #workload {
            h2 { (tr(lang, "工作量", "Workload")) " · "
                @for d in [1, 7] {
                    @if d == days { strong { (d) (tr(lang, " 天", " day(s)")) } } @else { a href=(format!("/ui/centre/{}?days={d}", r.id)) { (d) (tr(lang, " 天", " day(s)")) } }
                    " "
                }
            }
            table.obs #workload-all { (head.clone()) tbody { (figures_row(tr(lang, "全部", "All"), &w.all)) } }
            h3 { (tr(lang, "按医师", "By reader")) }
            table.obs #workload-readers { (head.clone()) tbody { @for (k, f) in &w.by_reader { (figures_row(k, f)) } } }
            h3 { (tr(lang, "按送检机构", "By institution")) }
            table.obs #workload-institutions { (head) tbody { @for (k, f) in &w.by_institution { (figures_row(k, f)) } } }
        }
        section.card #roster {
            h2 { (tr(lang, "排班", "Roster")) }
            p.hint {
                @if let (Some(by), Some(at)) = (&r.edited_by, r.edited_at) { (tr(lang, "最近修改：", "Last edited by ")) (by) " " (hm(at)) }
                @else { (tr(lang, "按配置文件", "As configured")) }
                " · " (tr(lang, "星期：mon,tue,…（空＝每天）；时间 HH:MM（都空＝全天；结束早于开始＝跨夜）", "Days: mon,tue,… (empty: every day); times HH:MM (both empty: all day; end before start: overnight)"))
            }
            form #roster-form method="post" action=(format!("/ui/centre/{}/roster", r.id)) {
                input type="hidden" name="csrf" value=(s.csrf);
                table.obs {
                    thead { tr {
                        th scope="col" { (tr(lang, "医师", "Reader")) }
                        th scope="col" { (tr(lang, "星期", "Days")) }
                        th scope="col" { (tr(lang, "开始", "From")) }
                        th scope="col" { (tr(lang, "结束", "To")) }
                    } }
                    tbody {
                        @for (n, e) in r.roster.iter().map(Some).chain([None, None, None]).enumerate() {
                            tr {
                                td { label { span.sr { (tr(lang, "医师", "Reader")) " " (n + 1) } input type="text" name="reader" value=(e.map(|e| e.reader.as_str()).unwrap_or("")); } }
                                td { label { span.sr { (tr(lang, "星期", "Days")) " " (n + 1) } input type="text" name="days" value=(e.map(|e| e.days.join(",")).unwrap_or_default()); } }
                                td { label { span.sr { (tr(lang, "开始", "From")) " " (n + 1) } input type="text" name="from" size="5" value=(e.and_then(|e| e.from.clone()).unwrap_or_default()); } }
                                td { label { span.sr { (tr(lang, "结束", "To")) " " (n + 1) } input type="text" name="to" size="5" value=(e.and_then(|e| e.to.clone()).unwrap_or_default()); } }
                            }
                        }
                    }
                }
                p { button #roster-save type="submit" { (tr(lang, "保存排班", "Save roster")) } }
            }
        }
    }
}

async fn centre_render(
    st: &WebState,
    w: &Web,
    s: &Signed,
    id: &str,
    days: i64,
    msg: Option<(&str, bool)>,
) -> Response {
    let r = match st.gate.centre_roster(&s.principal, id).await {
        Ok(r) => r,
        Err(p) => return problem_page(w.lang, Some(s), p),
    };
    let to = Utc::now();
    let from = to - chrono::Duration::days(days);
    let wl = match st.gate.centre_workload(&s.principal, id, from, to).await {
        Ok(x) => x,
        Err(p) => return problem_page(w.lang, Some(s), p),
    };
    let lang = w.lang;
    let status = if matches!(msg, Some((_, false))) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page(
        status,
        layout(
            lang,
            tr(lang, "阅片中心", "Reading centre"),
            Some(s),
            "/ui/worklist",
            centre_page(lang, s, &r, &wl, days, msg),
        ),
    )
}

async fn centre(
    State(st): State<WebState>,
    w: Web,
    Path(id): Path<String>,
    Query(q): Query<CentreQuery>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let days = if q.days == Some(7) { 7 } else { 1 };
    let done = q.done.is_some().then_some((
        tr(
            w.lang,
            "排班已保存，立即生效。",
            "Roster saved; in force now.",
        ),
        true,
    ));
    centre_render(&st, &w, &s, &id, days, done).await
}

/// `POST /ui/centre/{id}/roster`: the whole roster from the form (rows with an empty reader
/// are left out); CSRF-checked; the gate checks, records and audits.
async fn edit_roster(
    State(st): State<WebState>,
    w: Web,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let mut csrf = String::new();
    let mut rows: Vec<huren_api::centre::EntryBody> = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        let v = v.trim().to_string();
        match &*k {
            "csrf" => csrf = v,
            "reader" => rows.push(huren_api::centre::EntryBody {
                reader: v,
                days: vec![],
                from: None,
                to: None,
            }),
            "days" => {
                if let Some(r) = rows.last_mut() {
                    r.days = v
                        .split([',', ' ', '，'])
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(str::to_lowercase)
                        .collect();
                }
            }
            "from" => {
                if let Some(r) = rows.last_mut() {
                    r.from = Some(v);
                }
            }
            "to" => {
                if let Some(r) = rows.last_mut() {
                    r.to = Some(v);
                }
            }
            _ => {}
        }
    }
    if !same_origin(&headers) || !csrf_ok(&s, &csrf) {
        return csrf_refused(w.lang);
    }
    let entries = rows
        .into_iter()
        .filter(|r| !r.reader.is_empty())
        .map(|r| r.entry(&id))
        .collect();
    match st.gate.edit_roster(&s.principal, &id, entries).await {
        Ok(_) => Redirect::to(&format!("/ui/centre/{id}?done=1")).into_response(),
        Err(p) if p.status() == StatusCode::BAD_REQUEST => {
            let detail = p.detail().to_string();
            centre_render(&st, &w, &s, &id, 1, Some((&detail, false))).await
        }
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

/// `GET /ui/task/{id}/img/{report}/{uid}`: a preview of an instance of the task's study.
async fn image(
    State(st): State<WebState>,
    w: Web,
    Path((id, hash, uid)): Path<(String, String, String)>,
) -> Response {
    let Some(s) = &w.signed else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match st
        .gate
        .task_report(&s.principal, &id, &hash, "read_preview")
        .await
    {
        Ok(read) => crate::preview_response(&st, &read, &uid).await,
        Err(p) => p.into_response(),
    }
}
