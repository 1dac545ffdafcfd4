//! The clinicians' web page at `/`: server-rendered HTML (maud, escaped by construction)
//! with one small script, embedded in the binary. Sign-in puts the token's principal into a
//! server-side session named by an HttpOnly, SameSite=Strict cookie; every state-changing
//! form carries the session's CSRF token; the Content-Security-Policy allows no inline
//! script. Patient views go through the same authorisation, evaluation and audit as the
//! JSON API (`crate::api`); each view writes one audit record (channel `web`). The privacy
//! officer's identity review page (`/ui/identity`) lists and decides through the API's
//! `huren_api::identity::{list, decide}`.

// Refusals are whole pages (a redirect or an HTML answer), hence `Result<_, Response>`.
#![allow(clippy::result_large_err)]

mod alerting;
mod chart;
mod chestpain;
pub mod i18n;
mod pages;
mod reading;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use huren_audit::AuditRecord;
use huren_model::ReportKind;
use huren_recognition::{Action, Decision, Demographics, IntendedOrder, Level};
use serde::Deserialize;
use serde_json::json;

use huren_api::api::{self, Ask, Evaluated};
use huren_api::auth::{Principal, Role};
use huren_api::ApiState;
use huren_gate::Problem;
use i18n::Lang;

/// The web page's state: the API's state (the gate, the gateway, the rules) and the sessions.
#[derive(Clone)]
pub struct WebState {
    /// The API's state.
    pub api: ApiState,
    /// Sessions of the web page.
    pub web: std::sync::Arc<Sessions>,
}

impl WebState {
    /// The web page over the API's state, with no session yet.
    pub fn new(api: ApiState) -> WebState {
        WebState {
            api,
            web: Default::default(),
        }
    }
}

impl std::ops::Deref for WebState {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.api
    }
}

const SESSION_COOKIE: &str = "huren_session";
const LANG_COOKIE: &str = "huren_lang";
/// A session ends after this long without a request.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// And after this long in any case.
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// At most this many live sessions; a sign-in beyond them is refused (503), never at another
/// user's expense.
const MAX_SESSIONS: usize = 10_000;
/// At most this many live sessions per principal: a new one ends that principal's oldest.
const MAX_SESSIONS_PER_PRINCIPAL: usize = 20;
/// The pre-session cookie of the sign-in form (its CSRF token, double-submitted).
const PRESESSION_COOKIE: &str = "huren_presession";
/// Largest body of a form post (sign-in, a decision): far above any valid one.
const FORM_BODY_LIMIT: usize = 16 * 1024;
/// At most this many patients open in one session.
const MAX_PATIENTS: usize = 50;

/// A patient opened in a session: who, under which authorisation and encounter.
#[derive(Clone, Debug)]
pub struct PatientCtx {
    pub id: String,
    pub auth: Option<huren_access::Presented>,
    pub encounter: String,
}

struct Session {
    principal: Principal,
    csrf: String,
    created: Instant,
    last: Instant,
    patients: HashMap<String, (Instant, PatientCtx)>,
    /// Reports whose content an audited view of this session showed: their ECG traces and
    /// previews may be fetched as part of that view.
    shown: HashSet<String>,
}

/// Server-side sessions of the web page, keyed by the SHA-256 of the cookie value.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// A signed-in user, as a handler sees it.
#[derive(Clone)]
pub struct Signed {
    pub key: String,
    pub principal: Principal,
    pub csrf: String,
    /// Whether the chest-pain KPIs are theirs to see (a head of department, the commission).
    pub kpi: bool,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a session half-written: recover.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session; the cookie value and the CSRF token.
    fn open(&self, principal: Principal) -> Option<(String, String)> {
        let cookie = huren_api::auth::new_token().ok()?;
        let csrf = huren_api::auth::new_token().ok()?;
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, s| now - s.last < IDLE && now - s.created < ABSOLUTE);
        let same = |s: &Session| {
            s.principal.id == principal.id && s.principal.institution == principal.institution
        };
        // One principal (one token) never pushes out anyone else's sessions: only its own
        // oldest ends.
        while m.values().filter(|s| same(s)).count() >= MAX_SESSIONS_PER_PRINCIPAL {
            let oldest = m
                .iter()
                .filter(|(_, s)| same(s))
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => m.remove(&k),
                None => break,
            };
        }
        if m.len() >= MAX_SESSIONS {
            return None;
        }
        m.insert(
            huren_api::auth::token_hash(&cookie),
            Session {
                principal,
                csrf: csrf.clone(),
                created: now,
                last: now,
                patients: HashMap::new(),
                shown: HashSet::new(),
            },
        );
        Some((cookie, csrf))
    }

    fn get(&self, cookie: &str) -> Option<Signed> {
        let key = huren_api::auth::token_hash(cookie);
        let now = Instant::now();
        let mut m = self.lock();
        let live = m
            .get(&key)
            .is_some_and(|s| now - s.last < IDLE && now - s.created < ABSOLUTE);
        if !live {
            m.remove(&key);
            return None;
        }
        let s = m.get_mut(&key)?;
        s.last = now;
        Some(Signed {
            key,
            principal: s.principal.clone(),
            csrf: s.csrf.clone(),
            kpi: false,
        })
    }

    fn close(&self, key: &str) {
        self.lock().remove(key);
    }

    fn add_patient(&self, key: &str, ctx: PatientCtx) -> Option<String> {
        let handle = huren_api::auth::new_token().ok()?[..16].to_string();
        let mut m = self.lock();
        let s = m.get_mut(key)?;
        if s.patients.len() >= MAX_PATIENTS {
            if let Some(k) = s
                .patients
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                s.patients.remove(&k);
            }
        }
        s.patients.insert(handle.clone(), (Instant::now(), ctx));
        Some(handle)
    }

    fn patient(&self, key: &str, handle: &str) -> Option<PatientCtx> {
        self.lock()
            .get(key)?
            .patients
            .get(handle)
            .map(|(_, c)| c.clone())
    }

    fn mark_shown(&self, key: &str, hashes: impl IntoIterator<Item = String>) {
        if let Some(s) = self.lock().get_mut(key) {
            s.shown.extend(hashes);
        }
    }

    fn was_shown(&self, key: &str, hash: &str) -> bool {
        self.lock().get(key).is_some_and(|s| s.shown.contains(hash))
    }
}

/// The request as the web page sees it: language, and the session when signed in.
pub struct Web {
    pub lang: Lang,
    pub signed: Option<Signed>,
}

impl FromRequestParts<WebState> for Web {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &WebState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let lang = Lang::from_cookie(jar.get(LANG_COOKIE).map(|c| c.value()));
        let mut signed = jar.get(SESSION_COOKIE).and_then(|c| st.web.get(c.value()));
        if let Some(s) = &mut signed {
            s.kpi = st.api.gate.sees_kpis(&s.principal);
        }
        Ok(Web { lang, signed })
    }
}

impl Web {
    /// The signed-in user, or a redirect to the sign-in page.
    fn need(&self) -> Result<&Signed, Response> {
        self.signed
            .as_ref()
            .ok_or_else(|| Redirect::to("/?expired=1").into_response())
    }
}

/// An HTML answer with the page's security headers.
fn html(status: StatusCode, body: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

/// Adds the security headers every page answer carries.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        // Not no-referrer: with it a browser sends `Origin: null` on the page's own form
        // posts, and the sign-in checks the origin. Nothing leaves the origin.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_asset {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    res
}

/// The web page's routes (merged into the HTTP router).
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/ui/login",
            post(login).layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_LIMIT)),
        )
        .route("/ui/logout", post(logout))
        .route("/ui/lang/{code}", get(set_lang))
        .route("/ui/search", get(search_page).post(search))
        .route("/ui/p/{h}", get(timeline))
        .route("/ui/p/{h}/check", get(check))
        .route("/ui/p/{h}/r/{hash}", get(report_view))
        .route("/ui/p/{h}/ecg/{hash}/trace.svg", get(ecg_trace))
        .route("/ui/p/{h}/img/{hash}/{uid}", get(preview))
        .route(
            "/ui/p/{h}/decide",
            post(decide).layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_LIMIT)),
        )
        .route("/ui/stats", get(stats))
        .merge(reading::routes())
        .merge(alerting::routes())
        .merge(chestpain::routes())
        .route("/ui/identity", get(identity_page))
        .route(
            "/ui/identity/{id}/resolve",
            post(identity_resolve).layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_LIMIT)),
        )
        .route("/ui/assets/{file}", get(asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

async fn asset(Path(file): Path<String>) -> Response {
    let (ty, body) = match file.as_str() {
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct HomeQuery {
    expired: Option<String>,
}

async fn home(
    State(st): State<WebState>,
    w: Web,
    jar: CookieJar,
    Query(q): Query<HomeQuery>,
) -> Response {
    if w.signed.is_some() {
        return Redirect::to("/ui/search").into_response();
    }
    let msg = q.expired.is_some().then(|| w.lang.t().session_expired);
    sign_in_page(&st, w.lang, jar, StatusCode::OK, msg)
}

/// The sign-in page with its CSRF token: the pre-session cookie's value (kept if the browser
/// has one, else new), sent back as a hidden field.
fn sign_in_page(
    st: &WebState,
    lang: Lang,
    jar: CookieJar,
    status: StatusCode,
    msg: Option<&str>,
) -> Response {
    let token = jar
        .get(PRESESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| huren_api::auth::new_token().ok());
    let Some(token) = token else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let c = Cookie::build((PRESESSION_COOKIE, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.gw.config.http.tls.is_some())
        .path("/")
        .build();
    (jar.add(c), html(status, pages::sign_in(lang, msg, &token))).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Whether a form post comes from the page's own origin: its `Origin` (or, without one, its
/// `Referer`) names the host the request was sent to. A post with neither (not a browser's)
/// passes; the CSRF token still applies.
pub fn same_origin(h: &axum::http::HeaderMap) -> bool {
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let from = h
        .get(header::ORIGIN)
        .or_else(|| h.get(header::REFERER))
        .map(|v| v.to_str().unwrap_or("null"));
    let Some(from) = from else {
        return true;
    };
    let authority = from
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a.eq_ignore_ascii_case(h))
}

fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn session_cookie(st: &WebState, value: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.gw.config.http.tls.is_some())
        .path("/")
        .build()
}

async fn login(
    State(st): State<WebState>,
    api::PeerIp(peer): api::PeerIp,
    w: Web,
    jar: CookieJar,
    headers: axum::http::HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Problem> {
    // Cross-site sign-in (login CSRF): refused before the token is looked at, not audited.
    let pre = jar.get(PRESESSION_COOKIE).map(|c| c.value().to_string());
    if !same_origin(&headers) || !pre.is_some_and(|p| same_token(&p, &f.csrf)) {
        return Ok(csrf_refused(w.lang));
    }
    let token = f.token.trim();
    let Some(p) = st.gate.tokens().lookup(token).cloned() else {
        let rec = AuditRecord {
            actor: "anonymous".into(),
            action: "sign_in".into(),
            outcome: "denied: invalid token".into(),
            detail: json!({"channel": "web"}),
            ..Default::default()
        };
        // Aggregated per peer address and window, and rate-limited, like the API's.
        if let Some(retry) = st.gate.failed_authentication(peer, false, rec).await? {
            return Err(api::too_many_failures(retry));
        }
        return Ok(sign_in_page(
            &st,
            w.lang,
            jar,
            StatusCode::UNAUTHORIZED,
            Some(w.lang.t().bad_token),
        ));
    };
    let Some((cookie, _csrf)) = st.web.open(p.clone()) else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no session",
            "a session could not be opened (too many sessions, or no randomness)",
        ));
    };
    let mut r = api::record(&p, "sign_in");
    r.detail = json!({"channel": "web"});
    st.audit(r).await?;
    let target = if matches!(p.role, Role::Commission | Role::PrivacyOfficer) {
        "/ui/stats"
    } else {
        "/ui/search"
    };
    let jar = jar.remove(Cookie::build(PRESESSION_COOKIE).path("/").build());
    Ok((jar.add(session_cookie(&st, cookie)), Redirect::to(target)).into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

fn csrf_ok(s: &Signed, given: &str) -> bool {
    // Constant-time enough: both are 64 hex characters from our own generator.
    s.csrf.len() == given.len()
        && s.csrf
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn csrf_refused(lang: Lang) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::message(lang, None, lang.t().forbidden, "CSRF", "/"),
    )
}

async fn logout(
    State(st): State<WebState>,
    w: Web,
    jar: CookieJar,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(s) = &w.signed {
        if !csrf_ok(s, &f.csrf) {
            return csrf_refused(w.lang);
        }
        st.web.close(&s.key);
    }
    (
        jar.remove(Cookie::build(SESSION_COOKIE).path("/").build()),
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct BackQuery {
    back: Option<String>,
}

/// A `back` target the language switch may redirect to: only the page's own routes. The
/// value (already decoded once from the query) is percent-decoded again (a browser may do
/// so) and refused if either form holds a control or white-space character or `\\`, holds
/// `//`, or is not exactly `/` or `/ui/…`.
pub fn safe_back(back: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(back)
        .decode_utf8()
        .ok()?
        .into_owned();
    for s in [back, decoded.as_str()] {
        let bad = |c: char| c.is_control() || c.is_whitespace() || c == '\\';
        if s.chars().any(bad) || s.contains("//") {
            return None;
        }
        if !(s == "/" || s.starts_with("/ui/")) {
            return None;
        }
    }
    Some(back.to_string())
}

async fn set_lang(
    jar: CookieJar,
    Path(code): Path<String>,
    Query(q): Query<BackQuery>,
) -> Response {
    let v = if code == "en" { "en" } else { "zh" };
    // Only the page's own routes: never an open redirect.
    let back = q
        .back
        .as_deref()
        .and_then(safe_back)
        .unwrap_or_else(|| "/".into());
    let c = Cookie::build((LANG_COOKIE, v))
        .path("/")
        .same_site(SameSite::Lax)
        .permanent()
        .build();
    (jar.add(c), Redirect::to(&back)).into_response()
}

async fn search_page(State(st): State<WebState>, w: Web) -> Response {
    let s = match w.need() {
        Ok(s) => s,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        pages::search(&st, w.lang, s, &SearchForm::default(), None),
    )
}

/// The patient search form.
#[derive(Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub national_id: String,
    #[serde(default)]
    pub institution: String,
    #[serde(default)]
    pub local_id: String,
    #[serde(default)]
    pub auth_kind: String,
    #[serde(default)]
    pub auth_code: String,
    #[serde(default)]
    pub break_glass: String,
    #[serde(default)]
    pub encounter: String,
}

async fn search(State(st): State<WebState>, w: Web, Form(f): Form<SearchForm>) -> Response {
    let s = match w.need() {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !csrf_ok(s, &f.csrf) {
        return csrf_refused(w.lang);
    }
    let zh = w.lang == Lang::Zh;
    let bad = |msg: &str| {
        html(
            StatusCode::BAD_REQUEST,
            pages::search(&st, w.lang, s, &f, Some(msg)),
        )
    };
    let id = if f.by == "local" {
        let (i, l) = (f.institution.trim(), f.local_id.trim());
        if i.is_empty() || l.is_empty() || i.contains(':') {
            return bad(if zh {
                "请选择机构并输入院内患者号。"
            } else {
                "Choose an institution and enter the local ID."
            });
        }
        format!("{i}:{l}")
    } else {
        let n = f.national_id.trim().to_ascii_uppercase();
        let ok = n.len() == 18
            && n[..17].bytes().all(|b| b.is_ascii_digit())
            && n[17..].bytes().all(|b| b.is_ascii_digit() || b == b'X');
        if !ok {
            return bad(if zh {
                "身份证号应为 18 位（末位可为 X）。"
            } else {
                "A national ID has 18 characters (the last may be X)."
            });
        }
        format!("nid:{n}")
    };
    let reason = f.break_glass.trim();
    let code = f.auth_code.trim();
    let auth = if !reason.is_empty() {
        if reason.chars().count() > 200 {
            return bad(if zh {
                "破窗理由不超过 200 字。"
            } else {
                "The break-glass reason has at most 200 characters."
            });
        }
        Some(huren_access::Presented::BreakGlass {
            reason: reason.to_string(),
        })
    } else if !code.is_empty() {
        let kind = match f.auth_kind.as_str() {
            "health_card" => huren_access::CredentialKind::HealthCard,
            "id_card" => huren_access::CredentialKind::IdCard,
            _ => huren_access::CredentialKind::MedInsuranceCode,
        };
        // Kept in the server-side session only, verified by the gate at every view.
        Some(huren_access::Presented::Code {
            kind,
            code: code.to_string(),
        })
    } else {
        return bad(if zh {
            "请输入患者授权码，或在急诊时填写破窗理由。"
        } else {
            "Enter the patient's authorisation code, or a break-glass reason in an emergency."
        });
    };
    let encounter = match f.encounter.as_str() {
        e @ ("emergency" | "inpatient" | "physical_exam") => e.to_string(),
        _ => "outpatient".to_string(),
    };
    match st.web.add_patient(
        &s.key,
        PatientCtx {
            id,
            auth,
            encounter,
        },
    ) {
        Some(h) => Redirect::to(&format!("/ui/p/{h}")).into_response(),
        None => Redirect::to("/?expired=1").into_response(),
    }
}

/// Resolves the patient handle and authorises the view like the API does (a refusal is
/// audited there); the answer is a page on refusal.
async fn authorised(
    st: &WebState,
    w: &Web,
    h: &str,
    action: &'static str,
    intended: Option<IntendedOrder>,
) -> Result<(Signed, PatientCtx, api::Asked), Response> {
    let s = w.need()?.clone();
    let Some(ctx) = st.web.patient(&s.key, h) else {
        return Err(Redirect::to("/ui/search").into_response());
    };
    let asked = st
        .gate
        .patient(
            s.principal.clone(),
            action,
            ctx.auth.clone(),
            Ask {
                channel: Some("web"),
                patient: &ctx.id,
                encounter: Some(&ctx.encounter),
                intended,
                demographics: Demographics::default(),
                kind: None,
            },
        )
        .await
        .map_err(|p| problem_page(w.lang, Some(&s), p))?;
    Ok((s, ctx, asked))
}

fn problem_page(lang: Lang, s: Option<&Signed>, p: Problem) -> Response {
    let t = lang.t();
    let title = match p.status() {
        StatusCode::FORBIDDEN => t.forbidden,
        StatusCode::NOT_FOUND => t.not_found,
        _ => t.error,
    };
    html(
        p.status(),
        pages::message(lang, s, title, p.detail(), "/ui/search"),
    )
}

/// Writes the audit record of one patient view.
async fn audit_view(
    st: &WebState,
    asked: &api::Asked,
    returned: Vec<String>,
    detail: serde_json::Value,
) -> Result<(), Problem> {
    let mut rec = asked.audit_base();
    rec.returned = returned;
    rec.returned.sort();
    rec.returned.dedup();
    api::merge(&mut rec.detail, detail);
    api::merge(&mut rec.detail, json!({"channel": "web"}));
    st.audit(rec).await
}

#[derive(Deserialize)]
struct TimelineQuery {
    kind: Option<String>,
    done: Option<String>,
}

async fn timeline(
    State(st): State<WebState>,
    w: Web,
    Path(h): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Response {
    let started = Instant::now();
    let (s, ctx, asked) = match authorised(&st, &w, &h, "read_results", None).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let kind = match q.kind.as_deref() {
        Some("lab") => Some(ReportKind::Lab),
        Some("imaging") => Some(ReportKind::Imaging),
        Some("ecg") => Some(ReportKind::Ecg),
        _ => None,
    };
    let (link, evaluated) = match api::evaluate_patient(&st, &asked, kind).await {
        Ok(x) => x,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let shown: Vec<&Evaluated> = evaluated
        .iter()
        .filter(|e| !e.verdict.is_hidden_duplicate())
        .collect();
    let returned = shown
        .iter()
        .filter(|e| e.verdict.content_allowed())
        .map(|e| e.meta.hash.to_string())
        .collect();
    let advice = api::count_levels(&shown);
    if let Err(p) = audit_view(
        &st,
        &asked,
        returned,
        json!({"advice": advice, "kind": q.kind}),
    )
    .await
    {
        return problem_page(w.lang, Some(&s), p);
    }
    let page = pages::timeline(
        &st,
        w.lang,
        &s,
        &h,
        &ctx,
        &asked,
        link,
        &shown,
        q.kind.as_deref(),
        q.done.as_deref(),
    );
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        results = shown.len(),
        "web timeline"
    );
    html(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct CheckQuery {
    item: Option<String>,
    frag: Option<String>,
}

/// A catalogue item from what the doctor typed: `CODE`, `CODE name` (the datalist form) or
/// the exact name.
fn resolve_item(st: &WebState, typed: &str) -> Option<String> {
    let typed = typed.trim();
    let first = typed.split_whitespace().next().unwrap_or("");
    if st.rules.item(first).is_some() {
        return Some(first.to_string());
    }
    st.rules
        .file
        .items
        .iter()
        .find(|i| i.name == typed)
        .map(|i| i.code.get_ref().clone())
}

async fn check(
    State(st): State<WebState>,
    w: Web,
    Path(h): Path<String>,
    Query(q): Query<CheckQuery>,
) -> Response {
    let frag = q.frag.is_some();
    let typed = q.item.clone().unwrap_or_default();
    let Some(code) = resolve_item(&st, &typed) else {
        let msg = if w.lang == Lang::Zh {
            "不在互认目录中的项目"
        } else {
            "Not a catalogue item"
        };
        let body = pages::check_unknown(w.lang, &typed, msg);
        return if frag {
            html(StatusCode::UNPROCESSABLE_ENTITY, body)
        } else {
            html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message(
                    w.lang,
                    w.signed.as_ref(),
                    msg,
                    &typed,
                    &format!("/ui/p/{h}"),
                ),
            )
        };
    };
    let order = IntendedOrder {
        item_code: code.clone(),
        body_site: None,
        contrast: None,
        modality: None,
    };
    let (s, _ctx, asked) = match authorised(&st, &w, &h, "check", Some(order)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = match api::check_core(&st, &asked, &code).await {
        Ok(a) => a,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let cands = answer.candidates();
    let best = answer.best();
    let detail =
        json!({"item": code, "advice": api::count_levels(&cands), "recognizable": best.is_some()});
    let returned = best.iter().map(|e| e.meta.hash.to_string()).collect();
    if let Err(p) = audit_view(&st, &asked, returned, detail).await {
        return problem_page(w.lang, Some(&s), p);
    }
    let panel = pages::check_panel(&st, w.lang, &s, &h, &code, best, &cands, &answer.why_not);
    if frag {
        html(StatusCode::OK, panel)
    } else {
        html(
            StatusCode::OK,
            pages::message_markup(w.lang, Some(&s), &format!("/ui/p/{h}"), panel),
        )
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    item: Option<String>,
}

async fn report_view(
    State(st): State<WebState>,
    w: Web,
    Path((h, hash)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let (s, ctx, asked) = match authorised(&st, &w, &h, "read_report", None).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (_, evaluated) = match api::evaluate_patient(&st, &asked, None).await {
        Ok(x) => x,
        Err(p) => return problem_page(w.lang, Some(&s), p),
    };
    let target = evaluated.iter().find(|e| {
        e.meta.hash.to_string() == hash && q.item.as_deref().is_none_or(|i| e.item_key == i)
    });
    let Some(target) = target else {
        let p = Problem::new(
            StatusCode::NOT_FOUND,
            "no such result",
            "no result of this patient has that report",
        );
        return problem_page(w.lang, Some(&s), p);
    };
    let previews = if target.verdict.content_allowed() {
        previews_of(&st, &asked, &target.report)
    } else {
        vec![]
    };
    let view = pages::report(&st, w.lang, &s, &h, &ctx, target, &evaluated, &previews);
    let mut returned: Vec<String> = view.returned.clone();
    if target.verdict.content_allowed() {
        returned.push(target.meta.hash.to_string());
    }
    if let Err(p) = audit_view(
        &st,
        &asked,
        returned.clone(),
        json!({"report": hash, "item": target.item_key}),
    )
    .await
    {
        return problem_page(w.lang, Some(&s), p);
    }
    st.web.mark_shown(&s.key, returned);
    html(StatusCode::OK, view.markup)
}

/// A report this session's view showed (an ECG's trace, a study's previews), read — and
/// audited — through the gate under the patient's authorisation and encounter of that view.
async fn shown_report(
    st: &WebState,
    w: &Web,
    h: &str,
    hash: &str,
    action: &'static str,
) -> Result<huren_gate::ReportRead, Response> {
    let Some(s) = &w.signed else {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    };
    if !st.web.was_shown(&s.key, hash) {
        return Err(StatusCode::FORBIDDEN.into_response());
    }
    let Some(ctx) = st.web.patient(&s.key, h) else {
        return Err(StatusCode::FORBIDDEN.into_response());
    };
    let enc = huren_gate::encounter(Some(&ctx.encounter))
        .unwrap_or(huren_gate::EncounterKind::Outpatient);
    st.gate
        .report(&s.principal, ctx.auth.as_ref(), enc, hash, action)
        .await
        .map_err(IntoResponse::into_response)
}

async fn ecg_trace(
    State(st): State<WebState>,
    w: Web,
    Path((h, hash)): Path<(String, String)>,
) -> Response {
    match shown_report(&st, &w, &h, &hash, "read_ecg_trace").await {
        Ok(read) => trace_response(&read, &hash),
        Err(resp) => resp,
    }
}

/// An ECG's trace as an SVG answer (its own CSP: inline styles only, no script).
fn trace_response(read: &huren_gate::ReportRead, hash: &str) -> Response {
    match render_trace(read, hash) {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
                (header::CACHE_CONTROL, "private, max-age=600"),
            ],
            svg,
        )
            .into_response(),
        Err(p) => p.into_response(),
    }
}

fn render_trace(read: &huren_gate::ReportRead, hash: &str) -> Result<String, Problem> {
    let report = read
        .report()?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no such report", hash.to_string()))?;
    let body = report
        .ecg
        .as_ref()
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "not an ECG", hash.to_string()))?;
    huren_api::http::render_ecg(read, body, hash, &huren_ecg::RenderOptions::default())
}

/// How many preview images a study page shows.
const MAX_PREVIEWS: usize = 8;

/// The image instances of a study to preview: the middle instance of each image series, then
/// more of the first series, up to [`MAX_PREVIEWS`]; `(SOP Instance UID, caption)`.
fn previews_of(
    st: &WebState,
    asked: &api::Asked,
    report: &huren_model::Report,
) -> Vec<(String, String)> {
    let Some(im) = report.imaging.as_ref() else {
        return vec![];
    };
    let recs = match st
        .gate
        .study_instances(&asked.token, report, &im.study_instance_uid)
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "listing the instances of a study failed");
            return vec![];
        }
    };
    pick_previews(recs, report)
}

/// The instances of a study to preview (see [`previews_of`]) from its instance records.
fn pick_previews(
    mut recs: Vec<huren_model::InstanceRecord>,
    report: &huren_model::Report,
) -> Vec<(String, String)> {
    recs.retain(|r| {
        r.institution == report.source.institution
            && !matches!(
                r.modality.as_deref(),
                Some("SR" | "KO" | "PR" | "ECG" | "DOC")
            )
    });
    recs.sort_by_key(|r| (r.series_number, r.instance_number));
    let mut series: Vec<Vec<&huren_model::InstanceRecord>> = Vec::new();
    for r in &recs {
        match series.last_mut() {
            Some(s) if s[0].series_instance_uid == r.series_instance_uid => s.push(r),
            _ => series.push(vec![r]),
        }
    }
    let mut out: Vec<&huren_model::InstanceRecord> =
        series.iter().map(|s| s[s.len() / 2]).collect();
    if let Some(first) = series.first() {
        for r in first {
            if out.len() >= MAX_PREVIEWS {
                break;
            }
            if !out.iter().any(|o| o.sop_instance_uid == r.sop_instance_uid) {
                out.push(r);
            }
        }
    }
    out.truncate(MAX_PREVIEWS);
    out.sort_by_key(|r| (r.series_number, r.instance_number));
    out.into_iter()
        .map(|r| {
            let caption = format!(
                "{} {} · #{}",
                r.modality.as_deref().unwrap_or(""),
                r.series_description.as_deref().unwrap_or(""),
                r.instance_number.map(|n| n.to_string()).unwrap_or_default()
            );
            (r.sop_instance_uid.clone(), caption)
        })
        .collect()
}

/// A study page's preview image: part of that page's audited view (the session must have
/// been shown the study report, and the instance must belong to it).
async fn preview(
    State(st): State<WebState>,
    w: Web,
    Path((h, hash, uid)): Path<(String, String, String)>,
) -> Response {
    // The study report this session was shown, then the instance, which must be of that
    // study and its institution.
    let report = match shown_report(&st, &w, &h, &hash, "read_preview").await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    preview_response(&st, &report, &uid).await
}

/// The preview PNG of instance `uid` of the study `report` was read as.
async fn preview_response(st: &WebState, report: &huren_gate::ReportRead, uid: &str) -> Response {
    let read = match st.gate.instance_of_report(report, uid).await {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    match read.preview(512).await {
        Ok(Some(png)) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=600"),
            ],
            png,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, e.to_string()).into_response()
        }
    }
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    /// `REPORT|ITEM[|ACTION]` from the timeline's buttons and dialog.
    #[serde(default)]
    pick: Option<String>,
    #[serde(default)]
    report: String,
    #[serde(default)]
    item: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    exception: Option<String>,
    #[serde(default)]
    other_text: Option<String>,
    #[serde(default)]
    patient_informed: Option<String>,
    #[serde(default)]
    back: Option<String>,
}

async fn decide(
    State(st): State<WebState>,
    w: Web,
    Path(h): Path<String>,
    Form(mut f): Form<DecideForm>,
) -> Response {
    if let Some(p) = f.pick.take() {
        let mut it = p.splitn(3, '|');
        f.report = it.next().unwrap_or_default().to_string();
        f.item = it.next().unwrap_or_default().to_string();
        if let Some(a) = it.next() {
            f.action = Some(a.to_string());
        }
    }
    if let Some(s) = &w.signed {
        if !csrf_ok(s, &f.csrf) {
            return csrf_refused(w.lang);
        }
    }
    let (s, _ctx, asked) = match authorised(&st, &w, &h, "decision", None).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let action = match (f.exception.as_deref(), f.action.as_deref()) {
        (Some(_), _) | (None, Some("reject")) => Action::Reject,
        (None, Some("accept_discretionary")) => Action::AcceptDiscretionary,
        _ => Action::Accept,
    };
    let decision = Decision {
        action,
        exception_codes: f
            .exception
            .clone()
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect(),
        other_text: f.other_text.clone().filter(|t| !t.trim().is_empty()),
        patient_informed: f.patient_informed.is_some(),
    };
    match api::decide_core(&st, &asked, &f.report, &f.item, &decision).await {
        Ok((entry, level)) => {
            let back = f
                .back
                .filter(|b| b.starts_with(&format!("/ui/p/{h}")) && !b.contains('#'))
                .unwrap_or_else(|| format!("/ui/p/{h}"));
            let sep = if back.contains('?') { '&' } else { '?' };
            tracing::debug!(seq = entry.seq, level = ?level, "web decision");
            let what = match action {
                Action::Accept => "accept",
                Action::AcceptDiscretionary => "accept_discretionary",
                Action::Reject => "reject",
            };
            Redirect::to(&format!("{back}{sep}done={what}")).into_response()
        }
        Err(p) => {
            let t = w.lang.t();
            html(
                p.status(),
                pages::message(
                    w.lang,
                    Some(&s),
                    t.decision_refused,
                    p.detail(),
                    &format!("/ui/p/{h}"),
                ),
            )
        }
    }
}

#[derive(Deserialize)]
struct StatsQuery {
    group_by: Option<String>,
}

async fn stats(State(st): State<WebState>, w: Web, Query(q): Query<StatsQuery>) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let group_by = match q.group_by.as_deref() {
        Some(g @ ("item" | "reason")) => g.to_string(),
        _ => "institution".to_string(),
    };
    let query: api::StatsQuery = match serde_json::from_value(json!({"group_by": group_by})) {
        Ok(q) => q,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    match api::stats(
        State(st.api.clone()),
        api::Authed(s.principal.clone()),
        Query(query),
    )
    .await
    {
        Ok(axum::Json(v)) => html(StatusCode::OK, pages::stats(&st, w.lang, &s, &group_by, &v)),
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

/// Percent-encodes a value for one path segment or query value (an identity review item's
/// `SEQ-ENTRY` id stays as it is).
pub fn path_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[derive(Deserialize)]
struct IdentityQuery {
    done: Option<String>,
    review: Option<String>,
}

/// The privacy officer's identity review page: the open items, listed (role check, audit
/// record) by the same code as `GET /api/v1/identity/reviews`, with channel `web`.
async fn identity_page(
    State(st): State<WebState>,
    w: Web,
    Query(q): Query<IdentityQuery>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    match huren_api::identity::list(&st.api, &s.principal, Some("web")).await {
        Ok(items) => {
            // Only a decision word and an item id (`SEQ-ENTRY`) are echoed back.
            let done = match (q.done.as_deref(), q.review.as_deref()) {
                (Some(d @ ("keep" | "accept")), Some(r))
                    if !r.is_empty()
                        && r.len() <= 40
                        && r.bytes().all(|b| b.is_ascii_digit() || b == b'-') =>
                {
                    Some((d, r))
                }
                _ => None,
            };
            html(StatusCode::OK, pages::identity(w.lang, &s, &items, done))
        }
        Err(p) => problem_page(w.lang, Some(&s), p),
    }
}

#[derive(Deserialize)]
struct ResolveForm {
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

/// Decides an identity review item from the page's form: CSRF-checked, then the same role
/// check, validation, store call and audit record as
/// `POST /api/v1/identity/reviews/{id}/resolve` (channel `web`); back to the list with the
/// result, or a page saying why nothing was recorded.
async fn identity_resolve(
    State(st): State<WebState>,
    w: Web,
    Path(id): Path<String>,
    Form(f): Form<ResolveForm>,
) -> Response {
    let s = match w.need() {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(w.lang);
    }
    let asked = Ok((f.decision.as_str(), f.reason.as_str()));
    match huren_api::identity::decide(&st.api, &s.principal, &id, asked, Some("web")).await {
        Ok((decision, _)) => {
            let what = match decision {
                huren_store::ReviewDecision::KeepExisting => "keep",
                huren_store::ReviewDecision::AcceptClaim => "accept",
            };
            let id = path_segment(&id);
            Redirect::to(&format!("/ui/identity?done={what}&review={id}")).into_response()
        }
        Err(p) if p.status() == StatusCode::FORBIDDEN => problem_page(w.lang, Some(&s), p),
        Err(p) => {
            let t = w.lang.t();
            let no_reason = p.status() == StatusCode::BAD_REQUEST
                && matches!(f.decision.as_str(), "keep" | "accept")
                && f.reason.trim().is_empty();
            let detail = if no_reason {
                t.reason_required
            } else {
                p.detail()
            };
            html(
                p.status(),
                pages::message(w.lang, Some(&s), t.review_refused, detail, "/ui/identity"),
            )
        }
    }
}

/// The level's badge class, icon and label.
pub fn badge(lang: Lang, level: Level) -> (&'static str, &'static str, &'static str) {
    let t = lang.t();
    match level {
        Level::Recognizable => ("ok", "✔", t.recognizable),
        Level::ReferenceOnly => ("ref", "ⓘ", t.reference_only),
        Level::Blocked => ("no", "⛔", t.blocked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_targets_are_only_the_pages_own_routes() {
        for ok in [
            "/",
            "/ui/search",
            "/ui/p/abc?kind=lab",
            "/ui/p/abc/r/blake3:00?item=FX-LAB-K",
        ] {
            assert_eq!(safe_back(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "/\t/evil.example/x",
            "/%09/evil.example/x",
            "/%2509/evil.example/x",
            "//evil.example",
            "/%2F/evil.example",
            "/\\evil.example",
            "/%5Cevil.example",
            "/ui/../\\evil",
            "https://evil.example/",
            "evil.example",
            "",
            " /ui/search",
            "/ui/search\r\nSet-Cookie: x=1",
            "/ui/%0d%0aSet-Cookie:x",
            "/ui//evil.example",
            "/uix",
            "/api/v1/audit",
            "/\u{2028}/evil.example",
            "/%E2%80%A8/evil.example",
            "/%ff",
        ] {
            assert_eq!(safe_back(bad), None, "{bad:?}");
        }
    }

    fn principal(id: &str) -> Principal {
        Principal {
            id: id.into(),
            institution: "FX-ZX".into(),
            role: Role::Clinician,
            department: String::new(),
        }
    }

    #[test]
    fn one_principal_never_evicts_another_principals_session() {
        let s = Sessions::default();
        let (victim, _) = s.open(principal("dr.b")).unwrap();
        let mut mine = Vec::new();
        for _ in 0..1000 {
            mine.push(s.open(principal("dr.a")).unwrap().0);
        }
        assert!(
            s.get(&victim).is_some(),
            "another principal's session survives"
        );
        let live = mine.iter().filter(|c| s.get(c).is_some()).count();
        assert_eq!(live, MAX_SESSIONS_PER_PRINCIPAL);
        // The newest stay, the oldest went.
        assert!(s.get(&mine[999]).is_some() && s.get(&mine[0]).is_none());
    }

    #[test]
    fn same_origin_posts_only() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let host = ("host", "huren.example:8443");
        assert!(same_origin(&h(&[
            host,
            ("origin", "https://huren.example:8443")
        ])));
        assert!(same_origin(&h(&[
            host,
            ("referer", "https://huren.example:8443/?x")
        ])));
        assert!(same_origin(&h(&[host])));
        assert!(!same_origin(&h(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&h(&[host, ("origin", "null")])));
        assert!(!same_origin(&h(&[
            host,
            ("origin", "https://huren.example:8443.evil")
        ])));
        assert!(!same_origin(&h(&[
            host,
            ("referer", "https://evil.example/huren.example:8443")
        ])));
        assert!(!same_origin(&h(&[(
            "origin",
            "https://huren.example:8443"
        )])));
    }
}
