//! The pages, as maud templates: every value from a hospital message is inserted as text
//! (maud escapes it), never as markup.

use std::collections::BTreeMap;

use huren_model::{LabObservation, ReportKind};
use huren_recognition::{Level, Severity};
use huren_store::{IdentityLink, ReviewItem};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::chart::{parse_range, trend_svg, Point};
use super::i18n::{exception_en, reason_en, Lang};
use super::{badge, path_segment, PatientCtx, SearchForm, Signed};
use crate::WebState;
use huren_api::api::{self, Evaluated};
use huren_api::auth::Role;

/// Bumped when the assets change (cache busting).
const ASSET_V: &str = "10";

pub(crate) fn layout(
    lang: Lang,
    title: &str,
    s: Option<&Signed>,
    here: &str,
    body: Markup,
) -> Markup {
    let t = lang.t();
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 互认" }
                link rel="stylesheet" href=(format!("/ui/assets/style.css?v={ASSET_V}"));
                script src=(format!("/ui/assets/app.js?v={ASSET_V}")) defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "互认" }
                    span.app { (t.app) }
                    nav.user aria-label="account" {
                        @if let Some(s) = s {
                            span.who {
                                (s.principal.id) " · " (s.principal.institution)
                                @if !s.principal.department.is_empty() { " · " (s.principal.department) }
                            }
                            @if matches!(s.principal.role, Role::Commission | Role::PrivacyOfficer) {
                                a href="/ui/stats" { (t.stats) }
                                @if s.principal.role == Role::PrivacyOfficer {
                                    a #nav-identity href="/ui/identity" { (t.identity_reviews) }
                                }
                            } @else {
                                a href="/ui/search" { (t.find_patient) }
                            }
                            @if s.principal.role == Role::Clinician {
                                a href="/ui/worklist" { (if lang == Lang::Zh { "阅片工作列表" } else { "Worklist" }) }
                                a href="/ui/sent" { (if lang == Lang::Zh { "已发送心电图" } else { "Sent ECGs" }) }
                                a href="/ui/alerts" { (if lang == Lang::Zh { "胸痛预警" } else { "Alerts" }) }
                                a href="/ui/referrals" { (if lang == Lang::Zh { "绿色通道" } else { "Green channel" }) }
                            }
                            @if s.kpi {
                                a #nav-kpi href="/ui/kpi" { (if lang == Lang::Zh { "胸痛质控" } else { "Chest-pain KPIs" }) }
                            }
                        }
                        a lang=(if lang == Lang::Zh { "en" } else { "zh-CN" }) href=(format!("/ui/lang/{}?back={}", t.switch_code, urlencode(here))) { (t.switch_to) }
                        @if let Some(s) = s {
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { (t.sign_out) }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The sign-in page.
pub fn sign_in(lang: Lang, msg: Option<&str>, csrf: &str) -> Markup {
    let t = lang.t();
    layout(
        lang,
        t.sign_in,
        None,
        "/",
        html! {
            section.card.narrow {
                h1 { (t.sign_in) }
                p.hint { (t.sign_in_hint) }
                @if let Some(m) = msg { p.error role="alert" { (m) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { (t.token) }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button.primary type="submit" { (t.sign_in) }
                }
            }
        },
    )
}

/// A message page (errors, refusals).
pub fn message(lang: Lang, s: Option<&Signed>, title: &str, detail: &str, back: &str) -> Markup {
    layout(
        lang,
        title,
        s,
        back,
        html! {
            section.card {
                h1 { (title) }
                p.error role="alert" { (detail) }
                p { a href=(back) { "← " (lang.t().back) } }
            }
        },
    )
}

/// A page around a fragment.
pub fn message_markup(lang: Lang, s: Option<&Signed>, back: &str, inner: Markup) -> Markup {
    layout(
        lang,
        lang.t().preorder,
        s,
        back,
        html! {
            p { a href=(back) { "← " (lang.t().back) } }
            (inner)
        },
    )
}

/// The patient search form.
pub fn search(st: &WebState, lang: Lang, s: &Signed, f: &SearchForm, msg: Option<&str>) -> Markup {
    let t = lang.t();
    let local = f.by == "local";
    layout(
        lang,
        t.find_patient,
        Some(s),
        "/ui/search",
        html! {
            section.card {
                h1 { (t.find_patient) }
                @if let Some(m) = msg { p.error role="alert" { (m) } }
                form method="post" action="/ui/search" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    fieldset {
                        legend { (t.find_patient) }
                        div.choice {
                            input #by-nid type="radio" name="by" value="national" checked[!local];
                            label for="by-nid" { (t.by_national_id) }
                            input #by-local type="radio" name="by" value="local" checked[local];
                            label for="by-local" { (t.by_local_id) }
                        }
                        div.row {
                            label for="national_id" { (t.national_id) }
                            input #national_id name="national_id" value=(f.national_id) inputmode="text" maxlength="18" autocomplete="off" placeholder="310120…";
                        }
                        div.row {
                            label for="institution" { (t.institution) }
                            select #institution name="institution" {
                                @for i in &st.rules.file.institutions {
                                    option value=(i.code.get_ref()) selected[f.institution == *i.code.get_ref()] { (i.name) " (" (i.code.get_ref()) ")" }
                                }
                            }
                            label for="local_id" { (t.local_id) }
                            input #local_id name="local_id" value=(f.local_id) autocomplete="off";
                        }
                    }
                    fieldset {
                        legend { (t.authorisation) }
                        div.row {
                            label for="auth_kind" { (t.auth_kind) }
                            select #auth_kind name="auth_kind" {
                                option value="med_insurance_code" { (t.med_insurance_code) }
                                option value="health_card" selected[f.auth_kind == "health_card"] { (t.health_card) }
                                option value="id_card" selected[f.auth_kind == "id_card"] { (t.id_card) }
                            }
                            label for="auth_code" { (t.auth_code) }
                            input #auth_code name="auth_code" autocomplete="off";
                        }
                        div.row {
                            label for="break_glass" { (t.break_glass_reason) }
                            input #break_glass name="break_glass" maxlength="200" value=(f.break_glass) aria-describedby="bg-hint";
                        }
                        p.hint #bg-hint { (t.break_glass_hint) }
                        div.row {
                            label for="encounter" { (t.encounter) }
                            select #encounter name="encounter" {
                                option value="outpatient" { (t.outpatient) }
                                option value="emergency" selected[f.encounter == "emergency"] { (t.emergency) }
                                option value="inpatient" selected[f.encounter == "inpatient"] { (t.inpatient) }
                                option value="physical_exam" selected[f.encounter == "physical_exam"] { (t.physical_exam) }
                            }
                        }
                    }
                    button.primary #search-go type="submit" { (t.search) }
                }
            }
        },
    )
}

pub(crate) fn mask(id: &str) -> String {
    match id.strip_prefix("nid:") {
        Some(n) if n.chars().count() > 10 => {
            let c: Vec<char> = n.chars().collect();
            let head: String = c[..6].iter().collect();
            let tail: String = c[c.len() - 4..].iter().collect();
            format!("{head}********{tail}")
        }
        _ => id.to_string(),
    }
}

fn observations(e: &Evaluated) -> Vec<&LabObservation> {
    let Some(lab) = e.report.lab.as_ref() else {
        return vec![];
    };
    e.observations
        .iter()
        .filter_map(|i| lab.observations.get(*i))
        .collect()
}

fn kind_label(lang: Lang, k: ReportKind) -> &'static str {
    let t = lang.t();
    match k {
        ReportKind::Lab => t.lab,
        ReportKind::Imaging => t.imaging,
        ReportKind::Ecg => t.ecg,
    }
}

fn item_name(lang: Lang, e: &Evaluated) -> String {
    if let Some(n) = &e.verdict.evidence.item_name {
        return n.clone();
    }
    if let Some(n) = observations(e).first().and_then(|o| o.name.clone()) {
        return n;
    }
    if let Some(s) = e.report.lab.as_ref().and_then(|l| l.service_name.clone()) {
        return s;
    }
    kind_label(lang, e.report.kind).to_string()
}

fn when(e: &Evaluated) -> String {
    e.verdict
        .evidence
        .anchor_time
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "—".into())
}

fn flags(o: &LabObservation) -> String {
    o.abnormal_flags_raw.clone().unwrap_or_default()
}

fn is_abnormal(o: &LabObservation) -> bool {
    o.abnormal_flags_raw
        .as_deref()
        .is_some_and(|f| !f.is_empty() && f != "N")
}

fn reason_text(lang: Lang, code: &str, zh: &str) -> String {
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => reason_en(code).map_or_else(|| zh.to_string(), str::to_string),
    }
}

fn verdict_block(lang: Lang, e: &Evaluated, full: bool) -> Markup {
    let t = lang.t();
    let v = &e.verdict;
    let (class, icon, label) = badge(lang, v.level);
    html! {
        div.verdict {
            span class=(format!("badge {class}")) {
                span.icon aria-hidden="true" { (icon) } " " (label)
                @if let Some(hr) = &v.hr_label { " · " (hr) }
            }
            @if let Some(x) = v.expires_at {
                span.expiry { (t.expires) " " (x.format("%Y-%m-%d %H:%M")) }
            }
            @let shown: Vec<_> = v.reasons.iter().filter(|r| full || !matches!(r.severity, Severity::Info)).collect();
            @if !shown.is_empty() { ul.reasons {
                @for r in shown {
                    li class=(format!("sev-{:?}", r.severity).to_lowercase()) {
                        (reason_text(lang, r.code.as_str(), &r.zh_text))
                        @if full { " " span.code { "(" (r.code.as_str()) ")" } }
                    }
                }
            } }
        }
    }
}

fn summary(lang: Lang, e: &Evaluated) -> Markup {
    let t = lang.t();
    if !e.verdict.content_allowed() {
        return html! { p.hidden-content { (t.content_hidden) } };
    }
    let r = &e.report;
    html! {
        @match r.kind {
            ReportKind::Lab => {
                ul.values {
                    @for o in observations(e).iter().take(6) {
                        li class=[is_abnormal(o).then_some("ab")] {
                            span.n { (o.name.as_deref().unwrap_or(&o.code)) } " "
                            span.v { (o.value) } " "
                            @if let Some(u) = &o.unit { span.u { (u) } }
                            @if is_abnormal(o) { " " span.f { "[" (flags(o)) "]" } }
                        }
                    }
                }
            }
            ReportKind::Ecg => {
                @if let Some(ecg) = &r.ecg {
                    @if let Some(c) = &ecg.critical {
                        p.crit-inline { span aria-hidden="true" { "⚠" } " " (t.critical) ": " (if lang == Lang::Zh { &c.statement } else { &c.label }) }
                    }
                    p.values {
                        @if let Some(hr) = ecg.measurements.heart_rate_bpm { "HR " (hr) " bpm · " }
                        @for (i, s) in ecg.statements.iter().take(3).enumerate() {
                            @if i > 0 { "；" } (s.text)
                        }
                    }
                }
            }
            ReportKind::Imaging => {
                @if let Some(im) = &r.imaging {
                    p.values {
                        (im.modalities.join("/"))
                        @if !im.body_parts.is_empty() { " · " (im.body_parts.join("/")) }
                        @if let Some(d) = &im.description { " · " (d) }
                        " · " (im.series_count) " " (t.series) " / " (im.instance_count) " " (t.instances)
                    }
                    @if let Some(imp) = im.sr.as_ref().and_then(|s| s.impression.as_ref().or(s.findings.as_ref())) {
                        p.values { (t.impression) ": " (imp) }
                    }
                } @else if let Some(c) = &r.conclusion { p.values { (c) } }
            }
        }
    }
}

/// The patient's timeline: one row per result with its verdict and reasons.
#[allow(clippy::too_many_arguments)]
pub fn timeline(
    st: &WebState,
    lang: Lang,
    s: &Signed,
    h: &str,
    ctx: &PatientCtx,
    asked: &api::Asked,
    link: IdentityLink,
    shown: &[&Evaluated],
    kind: Option<&str>,
    done: Option<&str>,
) -> Markup {
    let t = lang.t();
    let here = match kind {
        Some(k) => format!("/ui/p/{h}?kind={k}"),
        None => format!("/ui/p/{h}"),
    };
    let who = shown
        .iter()
        .find(|e| e.verdict.content_allowed())
        .map(|e| &e.report.patient);
    let break_glass = ctx
        .auth
        .as_ref()
        .is_some_and(|a| matches!(a, huren_access::Presented::BreakGlass { .. }));
    let mut counts = [0usize; 3];
    for e in shown {
        counts[match e.verdict.level {
            Level::Recognizable => 0,
            Level::ReferenceOnly => 1,
            Level::Blocked => 2,
        }] += 1;
    }
    let tabs = [
        (None, t.all),
        (Some("lab"), t.lab),
        (Some("imaging"), t.imaging),
        (Some("ecg"), t.ecg),
    ];
    let body = html! {
        section.patient {
            h1 {
                @if let Some(p) = who {
                    (p.name.as_deref().map(person_name).unwrap_or_else(|| "—".into()))
                    span.demo {
                        @if let Some(sx) = &p.sex { " · " (sx) }
                        @if let Some(b) = &p.birth_date { " · " (b) }
                    }
                } @else { (t.results_of) }
            }
            p.pid {
                span.mono { (mask(&ctx.id)) } " · "
                (match link { IdentityLink::ExactNationalId => t.identity_national, IdentityLink::LocalOnly => t.identity_local })
                " · " (t.encounter) ": " (encounter_text(lang, &ctx.encounter))
                " · " a href="/ui/search" { (t.new_search) }
            }
            @if break_glass {
                p.banner.warn role="status" { span aria-hidden="true" { "⚠" } " " (t.break_glass) }
            }
            @if let Some(d) = done {
                p.banner.ok role="status" #done {
                    span aria-hidden="true" { "✔" } " " (t.decision_recorded) ": "
                    (match d { "accept" => t.accept, "accept_discretionary" => t.accept_discretionary, _ => t.repeat })
                }
            }
        }
        section.card.check {
            h2 { (t.preorder) }
            p.hint { (t.preorder_hint) }
            form #check-form method="get" action=(format!("/ui/p/{h}/check")) {
                label for="check-item" { (t.item) }
                input #check-item name="item" list="items" autocomplete="off" required;
                datalist #items {
                    @for i in &st.rules.file.items {
                        option value=(format!("{} {}", i.code.get_ref(), i.name)) {}
                    }
                }
                button type="submit" { (t.check) }
            }
            div #check-out aria-live="polite" {}
        }
        section.results {
            div.counts {
                span.badge.ok { span.icon aria-hidden="true" { "✔" } " " (t.recognizable) " " (counts[0]) }
                span.badge.ref { span.icon aria-hidden="true" { "ⓘ" } " " (t.reference_only) " " (counts[1]) }
                span.badge.no { span.icon aria-hidden="true" { "⛔" } " " (t.blocked) " " (counts[2]) }
            }
            nav.tabs aria-label="kind" {
                @for (k, label) in tabs {
                    @let href = match k { Some(k) => format!("/ui/p/{h}?kind={k}"), None => format!("/ui/p/{h}") };
                    @if k == kind { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                }
            }
            @if shown.is_empty() { p { (t.no_results) } }
            form #decide method="post" action=(format!("/ui/p/{h}/decide")) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="back" value=(here);
            }
            ol.timeline {
                @for e in shown {
                    @let hash = e.meta.hash.to_string();
                    @let pick = format!("{hash}|{}", e.item_key);
                    @let (class, _, _) = badge(lang, e.verdict.level);
                    @let open = format!("/ui/p/{h}/r/{hash}?item={}", urlencode(&e.item_key));
                    li class=(format!("res lv-{class}")) {
                        div.head {
                            time { (when(e)) }
                            span.kind { (kind_label(lang, e.report.kind)) }
                            a.item href=(open) { (item_name(lang, e)) }
                            span.inst { (api::institution_name(st, &e.meta.institution).unwrap_or_else(|| e.meta.institution.clone())) }
                        }
                        (summary(lang, e))
                        (verdict_block(lang, e, false))
                        div.actions {
                                @match e.verdict.level {
                                    Level::Recognizable => {
                                        button.accept form="decide" name="pick" value=(format!("{pick}|accept")) { "✔ " (t.accept) }
                                    }
                                    Level::ReferenceOnly => {
                                        button.accept form="decide" name="pick" value=(format!("{pick}|accept_discretionary")) { (t.accept_discretionary) }
                                    }
                                    Level::Blocked => {}
                                }
                                @if e.verdict.level != Level::Blocked {
                                    a.rep href=(format!("{open}#decide-full")) { (t.repeat) "…" }
                                }
                        }
                    }
                }
            }
        }
        dialog #rep-dlg aria-labelledby="rep-title" {
            form method="post" action=(format!("/ui/p/{h}/decide")) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="back" value=(here);
                input #rep-pick type="hidden" name="pick" value="";
                input type="hidden" name="patient_informed" value="1";
                h2 #rep-title { (t.repeat_with) }
                p.hint { (t.patient_informed) " ✔ — " (if lang == Lang::Zh { "点击原因即确认已向患者说明。" } else { "choosing a reason confirms the patient was told." }) }
                label for="rep-text" { (t.other_text) }
                input #rep-text name="other_text" maxlength="200" autocomplete="off";
                div.reasons-grid {
                    @for c in st.rules.exception_codes() {
                        button name="exception" value=(c.code) type="submit" { (c.code) " " (exc_text(lang, &c.code, &c.text)) }
                    }
                }
                button.link #rep-cancel type="button" { (t.back) }
            }
        }
        @let _ = asked;
    };
    layout(lang, t.results_of, Some(s), &here, body)
}

/// A DICOM person name (`family^given^…`) as people write it: Chinese names without a
/// separator (李^医生 → 李医生), others with spaces.
pub(crate) fn person_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or(pn);
    let parts: Vec<&str> = alphabetic.split('^').filter(|p| !p.is_empty()).collect();
    if parts
        .iter()
        .any(|p| p.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
    {
        parts.concat()
    } else {
        parts.join(" ")
    }
}

fn status_text(lang: Lang, s: huren_model::ReportStatus) -> &'static str {
    use huren_model::ReportStatus as S;
    match (lang, s) {
        (Lang::Zh, S::Final) => "终审",
        (Lang::Zh, S::Preliminary) => "初步报告",
        (Lang::Zh, S::Corrected) => "已更正",
        (Lang::Zh, S::Cancelled) => "已撤销",
        (Lang::En, S::Final) => "final",
        (Lang::En, S::Preliminary) => "preliminary",
        (Lang::En, S::Corrected) => "corrected",
        (Lang::En, S::Cancelled) => "cancelled",
    }
}

fn encounter_text(lang: Lang, e: &str) -> &'static str {
    let t = lang.t();
    match e {
        "emergency" => t.emergency,
        "inpatient" => t.inpatient,
        "physical_exam" => t.physical_exam,
        _ => t.outpatient,
    }
}

fn exc_text(lang: Lang, code: &str, zh: &str) -> String {
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => exception_en(code).map_or_else(|| zh.to_string(), str::to_string),
    }
}

/// The pre-order check panel.
#[allow(clippy::too_many_arguments)]
pub fn check_panel(
    st: &WebState,
    lang: Lang,
    _s: &Signed,
    h: &str,
    code: &str,
    best: Option<&Evaluated>,
    cands: &[&Evaluated],
    why: &[Value],
) -> Markup {
    let t = lang.t();
    let name = st
        .rules
        .item(code)
        .map(|i| i.name.clone())
        .unwrap_or_default();
    html! {
        div #check-result class=(if best.is_some() { "check-ans yes" } else { "check-ans no" }) data-item=(code) {
            h3 {
                @if best.is_some() { span aria-hidden="true" { "✔ " } (t.check_yes) } @else { span aria-hidden="true" { "✘ " } (t.check_no) }
                " — " (name) " (" (code) ")"
            }
            @if let Some(e) = best {
                p {
                    (when(e)) " · " (api::institution_name(st, &e.meta.institution).unwrap_or_default()) " · "
                    a href=(format!("/ui/p/{h}/r/{}?item={}", e.meta.hash, urlencode(&e.item_key))) { (t.open) }
                }
                (summary(lang, e))
                (verdict_block(lang, e, false))
            } @else {
                ul.reasons {
                    @for w in why {
                        @let code = w["code"].as_str().unwrap_or("");
                        li { (reason_text(lang, code, w["zh_text"].as_str().unwrap_or(""))) }
                    }
                }
                @if !cands.is_empty() {
                    p.hint { (cands.len()) " × " (t.reference_only) "/" (t.blocked) }
                }
            }
        }
    }
}

/// The answer to an unknown item in the check.
pub fn check_unknown(_lang: Lang, typed: &str, msg: &str) -> Markup {
    html! {
        div #check-result.check-ans.no {
            h3 { span aria-hidden="true" { "✘ " } (msg) }
            p { (typed) }
        }
    }
}

/// A report page and the reports whose content it shows besides the report itself.
pub struct ReportView {
    pub markup: Markup,
    pub returned: Vec<String>,
}

/// Trend of every numeric observation of the item across the patient's results.
fn trends(st: &WebState, lang: Lang, e: &Evaluated, all: &[Evaluated]) -> (Markup, Vec<String>) {
    let t = lang.t();
    let mut returned = Vec::new();
    let mut charts = Vec::new();
    for o in observations(e) {
        let mut insts: Vec<String> = Vec::new();
        let mut pts: Vec<Point> = Vec::new();
        let same_item = |x: &Evaluated| {
            x.verdict.evidence.regional_code.is_some()
                && x.verdict.evidence.regional_code == e.verdict.evidence.regional_code
                || x.candidate.local_code == e.candidate.local_code
                    && x.meta.institution == e.meta.institution
        };
        for x in all
            .iter()
            .filter(|x| x.verdict.content_allowed() && same_item(x))
        {
            let Some(time) = x.verdict.evidence.anchor_time else {
                continue;
            };
            for p in observations(x).into_iter().filter(|p| p.code == o.code) {
                let Ok(v) = p.value.trim().parse::<f64>() else {
                    continue;
                };
                let name = api::institution_name(st, &x.meta.institution)
                    .unwrap_or_else(|| x.meta.institution.clone());
                let idx = insts.iter().position(|i| *i == name).unwrap_or_else(|| {
                    insts.push(name);
                    insts.len() - 1
                });
                pts.push(Point {
                    time,
                    value: v,
                    label: p.value.clone(),
                    institution: idx,
                    abnormal: is_abnormal(p),
                });
                returned.push(x.meta.hash.to_string());
            }
        }
        if pts.len() < 2 {
            continue;
        }
        let title = format!(
            "{} {} ({})",
            o.name.as_deref().unwrap_or(&o.code),
            t.trend,
            o.unit.as_deref().unwrap_or("")
        );
        let range = o.reference_range.as_deref().and_then(parse_range);
        charts.push(html! {
            figure.chart {
                figcaption { (title) }
                (trend_svg(&title, range, t.range, &insts, &pts))
            }
        });
    }
    (html! { @for c in charts { (c) } }, returned)
}

/// The report page: content, verdict and reasons, trend or trace, and the decision form.
#[allow(clippy::too_many_arguments)]
pub fn report(
    st: &WebState,
    lang: Lang,
    s: &Signed,
    h: &str,
    _ctx: &PatientCtx,
    e: &Evaluated,
    all: &[Evaluated],
    previews: &[(String, String)],
) -> ReportView {
    let t = lang.t();
    let hash = e.meta.hash.to_string();
    let here = format!("/ui/p/{h}/r/{hash}?item={}", urlencode(&e.item_key));
    let r = &e.report;
    let allowed = e.verdict.content_allowed();
    let (trend, returned) = if allowed && r.kind == ReportKind::Lab {
        trends(st, lang, e, all)
    } else {
        (html! {}, vec![])
    };
    let body = html! {
        p { a href=(format!("/ui/p/{h}")) { "← " (t.back) } }
        @if let (true, Some(c)) = (allowed, r.ecg.as_ref().and_then(|x| x.critical.as_ref())) {
            div.banner.crit role="alert" #critical {
                span aria-hidden="true" { "⚠ " } strong { (t.critical) } ": " (c.statement) " — " (c.label)
            }
        }
        section.card {
            h1 { (item_name(lang, e)) }
            p.meta {
                (kind_label(lang, r.kind)) " · " (when(e)) " · "
                (api::institution_name(st, &e.meta.institution).unwrap_or_else(|| e.meta.institution.clone()))
                " · " (t.status) ": " (status_text(lang, r.status))
                " · " (t.version) " " (e.meta.version)
            }
            (verdict_block(lang, e, true))
        }
        @if !allowed {
            p.hidden-content { (t.content_hidden) }
        } @else {
            @match r.kind {
                ReportKind::Lab => {
                    section.card {
                        table.obs {
                            thead { tr { th scope="col" { (t.item) } th scope="col" { (t.value) } th scope="col" { (t.unit) } th scope="col" { (t.range) } th scope="col" { (t.flag) } } }
                            tbody {
                                @for o in observations(e) {
                                    tr class=[is_abnormal(o).then_some("ab")] {
                                        td { (o.name.as_deref().unwrap_or(&o.code)) " " span.code { (o.code) } }
                                        td.v { (o.value) }
                                        td { (o.unit.as_deref().unwrap_or("")) }
                                        td { (o.reference_range.as_deref().unwrap_or("")) }
                                        td { @if is_abnormal(o) { span aria-hidden="true" { "▲ " } } (flags(o)) }
                                    }
                                }
                            }
                        }
                        @if let Some(c) = &r.conclusion { p { (t.conclusion) ": " (c) } }
                    }
                    section.card.trends { h2 { (t.trend) } (trend) }
                }
                ReportKind::Ecg => {
                    @if let Some(ecg) = &r.ecg {
                        @let m = &ecg.measurements;
                        section.card {
                            h2 { (t.measurements) }
                            dl.meas {
                                @for (k, v, u) in [("HR", m.heart_rate_bpm, "bpm"), ("PR", m.pr_ms, "ms"), ("QRS", m.qrs_ms, "ms"), ("QT", m.qt_ms, "ms"), ("QTc", m.qtc_ms, "ms"), ("P axis", m.p_axis_deg, "°"), ("QRS axis", m.qrs_axis_deg, "°"), ("T axis", m.t_axis_deg, "°")] {
                                    @if let Some(v) = v { div { dt { (k) } dd { (v) " " (u) } } }
                                }
                            }
                            h2 { (t.statements) }
                            ul.statements { @for st in &ecg.statements { li { (st.text) } } }
                        }
                        @if ecg.waveform.is_some() {
                            section.card.trace {
                                img #ecg-trace src=(format!("/ui/p/{h}/ecg/{hash}/trace.svg")) alt=(t.trace_alt);
                            }
                        }
                    }
                }
                ReportKind::Imaging => {
                    @if let Some(im) = &r.imaging {
                        section.card #study {
                            dl.meas {
                                @let zh = lang == Lang::Zh;
                                @for (k, v) in [
                                    (if zh { "检查类型" } else { "Modality" }, Some(im.modalities.join("/"))),
                                    (if zh { "部位" } else { "Body part" }, (!im.body_parts.is_empty()).then(|| im.body_parts.join("/"))),
                                    (if zh { "检查描述" } else { "Description" }, im.description.clone()),
                                    (if zh { "检查号" } else { "Accession" }, im.accession_number.clone()),
                                    (if zh { "检查日期" } else { "Study date" }, im.study_date.clone()),
                                    (if zh { "申请医生" } else { "Referring" }, im.referring_physician.as_deref().map(person_name)),
                                    (if zh { "检查机构" } else { "Institution" }, im.institution_name.clone()),
                                ] {
                                    @if let Some(v) = v { div { dt { (k) } dd { (v) } } }
                                }
                            }
                            h2 { (t.series) }
                            table.obs #series {
                                @let zh = lang == Lang::Zh;
                                thead { tr { th scope="col" { "#" } th scope="col" { (if zh { "类型" } else { "Modality" }) } th scope="col" { (if zh { "描述" } else { "Description" }) } th scope="col" { (if zh { "部位" } else { "Body part" }) } th scope="col" { (t.instances) } } }
                                tbody {
                                    @for se in &im.series {
                                        tr {
                                            td { (se.number.map(|n| n.to_string()).unwrap_or_default()) }
                                            td { (se.modality.as_deref().unwrap_or("")) }
                                            td { (se.description.as_deref().unwrap_or("")) }
                                            td { (se.body_part.as_deref().unwrap_or("")) }
                                            td { (se.instance_count) }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some(sr) = &im.sr {
                            section.card #sr {
                                h2 { (sr.title.as_deref().unwrap_or("SR")) }
                                @if let Some(f) = &sr.findings { h3 { (t.findings) } p.sr-text { (f) } }
                                @if let Some(i) = &sr.impression { h3 { (t.impression) } p.sr-text { (i) } }
                                p.hint {
                                    @if let Some(c) = &sr.completion_flag { "Completion: " (c) " · " }
                                    @if let Some(v) = &sr.verification_flag { "Verification: " (v) }
                                    @if let Some(o) = &sr.verifying_observer { " · " (person_name(o)) }
                                }
                            }
                        }
                        @if !previews.is_empty() {
                            section.card.previews #previews {
                                h2 { (t.previews) }
                                div.thumbs {
                                    @for (uid, label) in previews {
                                        figure {
                                            img src=(format!("/ui/p/{h}/img/{hash}/{uid}")) alt=(label) loading="lazy";
                                            figcaption { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    } @else {
                        section.card { @if let Some(c) = &r.conclusion { p { (c) } } }
                    }
                }
            }
        }
        @if e.verdict.level != Level::Blocked {
            section.card #decide-full {
                h2 { (t.decisions) }
                form method="post" action=(format!("/ui/p/{h}/decide")) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="report" value=(hash);
                    input type="hidden" name="item" value=(e.item_key);
                    input type="hidden" name="back" value=(format!("/ui/p/{h}"));
                    @match e.verdict.level {
                        Level::Recognizable => { button.accept.primary name="action" value="accept" { "✔ " (t.accept) } }
                        Level::ReferenceOnly => { button.accept name="action" value="accept_discretionary" { (t.accept_discretionary) } }
                        Level::Blocked => {}
                    }
                    fieldset {
                        legend { (t.repeat_with) }
                        div.choice {
                            input #pi type="checkbox" name="patient_informed" value="1";
                            label for="pi" { (t.patient_informed) }
                        }
                        label for="other" { (t.other_text) }
                        input #other name="other_text" maxlength="200" autocomplete="off";
                        div.reasons-grid {
                            @for c in st.rules.exception_codes() {
                                button name="exception" value=(c.code) type="submit" { (c.code) " " (exc_text(lang, &c.code, &c.text)) }
                            }
                        }
                    }
                }
            }
        }
    };
    ReportView {
        markup: layout(lang, &item_name(lang, e), Some(s), &here, body),
        returned,
    }
}

/// The statistics page (health commission, privacy officers).
pub fn stats(_st: &WebState, lang: Lang, s: &Signed, group_by: &str, v: &Value) -> Markup {
    let t = lang.t();
    let row = |g: &Value| {
        html! {
            td { (g["advice"]["recognizable"].as_u64().unwrap_or(0)) }
            td { (g["advice"]["reference_only"].as_u64().unwrap_or(0)) }
            td { (g["advice"]["blocked"].as_u64().unwrap_or(0)) }
            td { (g["accept"].as_u64().unwrap_or(0)) }
            td { (g["accept_discretionary"].as_u64().unwrap_or(0)) }
            td { (g["reject"].as_u64().unwrap_or(0)) }
            td { (format!("{:.2}", g["estimated_savings_cny"].as_f64().unwrap_or(0.0))) }
        }
    };
    let reasons: BTreeMap<String, u64> = v["total"]["reject_reasons"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    layout(
        lang,
        t.stats,
        Some(s),
        "/ui/stats",
        html! {
            section.card {
                h1 { (t.stats) }
                nav.tabs aria-label="group" {
                    @for g in ["institution", "item", "reason"] {
                        @if g == group_by { a href=(format!("/ui/stats?group_by={g}")) aria-current="page" { (g) } }
                        @else { a href=(format!("/ui/stats?group_by={g}")) { (g) } }
                    }
                }
                table.stats #stats-table {
                    thead { tr {
                        th scope="col" { (t.group) }
                        th scope="col" { (t.recognizable) } th scope="col" { (t.reference_only) } th scope="col" { (t.blocked) }
                        th scope="col" { (t.accept) } th scope="col" { (t.accept_discretionary) } th scope="col" { (t.rejected) }
                        th scope="col" { (t.savings) }
                    } }
                    tbody {
                        tr.total #stats-total { th scope="row" { "Σ" } (row(&v["total"])) }
                        @for g in v["groups"].as_array().into_iter().flatten() {
                            tr { th scope="row" { (g["key"].as_str().unwrap_or("-")) } (row(g)) }
                        }
                    }
                }
                @if !reasons.is_empty() {
                    h2 { (t.rejected) }
                    ul { @for (k, n) in &reasons { li { (k) ": " (n) } } }
                }
            }
        },
    )
}

/// The privacy officer's identity review page: the open items — what was claimed, by which
/// institution and message, the existing link, the reports concerned (their hashes only: no
/// clinical content, they are identity-uncertain) — each with its decision form. `done` is
/// the decision just recorded (`keep` / `accept`) and its item.
pub fn identity(
    lang: Lang,
    s: &Signed,
    items: &[ReviewItem],
    done: Option<(&str, &str)>,
) -> Markup {
    let t = lang.t();
    layout(
        lang,
        t.identity_reviews,
        Some(s),
        "/ui/identity",
        html! {
            section.card {
                h1 { (t.identity_reviews) }
                @if let Some((d, id)) = done {
                    p.banner.ok role="status" #done {
                        (if d == "accept" { t.review_accepted } else { t.review_kept })
                        " · " (t.review_item) " " span.mono { (id) }
                    }
                }
                p.hint { (t.identity_hint) }
                @if items.is_empty() {
                    p #no-reviews { (t.no_open_reviews) }
                }
            }
            @for i in items {
                article.card.review id=(format!("review-{}", i.id)) {
                    h2 { (t.review_item) " " span.mono { (i.id) } }
                    table {
                        tr { th scope="row" { (t.claimed_local) } td.mono.local { (i.local) } }
                        tr { th scope="row" { (t.claimed_by) } td.institution { (i.institution) } }
                        tr { th scope="row" { (t.message_id) } td.mono.message { (i.message_id.as_deref().unwrap_or("-")) } }
                        tr { th scope="row" { (t.received) } td { (i.at) } }
                        tr { th scope="row" { (t.current_link) } td.mono { (i.current) } }
                        tr { th scope="row" { (t.claimed_person) } td.mono { (i.claimed) } }
                        tr {
                            th scope="row" { (t.reports_concerned) }
                            td {
                                @if i.reports.is_empty() { "-" }
                                ul.reports { @for h in &i.reports { li.mono { (h.to_string()) } } }
                            }
                        }
                    }
                    form.resolve method="post" action=(format!("/ui/identity/{}/resolve", path_segment(&i.id))) {
                        input type="hidden" name="csrf" value=(s.csrf);
                        fieldset {
                            legend { (t.decision) }
                            div.choice {
                                input id=(format!("keep-{}", i.id)) type="radio" name="decision" value="keep" checked;
                                label for=(format!("keep-{}", i.id)) { (t.keep_existing) }
                            }
                            div.choice {
                                input id=(format!("accept-{}", i.id)) type="radio" name="decision" value="accept";
                                label for=(format!("accept-{}", i.id)) { (t.accept_claim) }
                            }
                        }
                        div.row {
                            label for=(format!("reason-{}", i.id)) { (t.review_reason) }
                            input.reason id=(format!("reason-{}", i.id)) name="reason" required maxlength="500" autocomplete="off";
                        }
                        button.primary type="submit" { (t.resolve) }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_read_naturally() {
        assert_eq!(person_name("李^秀英"), "李秀英");
        assert_eq!(person_name("王^主任"), "王主任");
        assert_eq!(person_name("Smith^John^^Dr"), "Smith John Dr");
        assert_eq!(person_name("Wang^Xiaodong=王^小东"), "Wang Xiaodong");
        assert_eq!(mask("nid:310120195805201229"), "310120********1229");
        assert_eq!(mask("FX-ZX:123"), "FX-ZX:123");
    }
}
