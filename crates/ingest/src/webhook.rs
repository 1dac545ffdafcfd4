//! Alert notices to a recipient group's webhook (issue 18, docs/alerts.md "Webhooks"): so a
//! region can connect its WeCom, DingTalk or SMS gateway. Every notice of an alert
//! ([`huren_alerting::notices`]: raised, each escalation step, acknowledged, cancelled) is
//! enqueued in the durable outbox `webhooks.log` once per `[[webhook]]` of the alert's group
//! — by the alert follower ([`crate::alerts::follow`]) on each change of an alert, and at start-up for the notices of
//! the last hour a crash may have left unqueued — and posted by the outbox's delivery loop
//! (the same as the HL7 results'): retried with backoff, each notice recorded as delivered
//! once, in order per webhook.
//!
//! The request follows Standard Webhooks (<https://www.standardwebhooks.com>): headers
//! `webhook-id` (the notice's stable id: a receiver that sees it twice — a crash between its
//! 2xx and our record — drops the second), `webhook-timestamp` (Unix seconds of the attempt)
//! and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the
//! secret), and a JSON body `{"type","timestamp","data"}`. The body carries no patient: what
//! the cart saw, the sending institution, the group, the step, the decision, and a link to
//! the alert page, where the clinician signs in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use huren_alerting::{notices, Alert, Notice, State};
use huren_store::{Outbox, OutboxEntry, StoreError};
use serde_json::json;

use crate::config::{Config, WebhookConfig};
use crate::outbox::{Courier, Failure};
use crate::Gateway;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest secret bytes accepted (after base64 decoding).
pub const SECRET_MIN_BYTES: usize = 24;
/// How far back the start-up reconciliation enqueues notices that are not in the outbox.
pub const RECONCILE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// Most characters of a receiver's answer kept as an attempt's result.
const MAX_REASON: usize = 200;

/// A webhook URL as accepted: `https://…`, or `http://` to a loopback address (a relay on the
/// same machine; anything else would send alerts in clear text).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" => match u.host_str().map(|h| h.trim_matches(['[', ']'])) {
            Some("localhost") => Ok(u),
            Some(h) if h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback()) => Ok(u),
            _ => Err(format!(
                "{url:?}: http:// only to a loopback address; use https://"
            )),
        },
        other => Err(format!("{url:?}: scheme {other:?} is not https")),
    }
}

/// The secret's bytes from its `whsec_…` text.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = text
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("the secret must start with {SECRET_PREFIX} (Standard Webhooks)"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the secret after whsec_ is not base64".to_string())?;
    if bytes.len() < SECRET_MIN_BYTES {
        return Err(format!(
            "the secret is {} bytes; at least {SECRET_MIN_BYTES} are required",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` (Standard Webhooks).
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

/// One configured webhook, its secret resolved.
struct Hook {
    url: reqwest::Url,
    secret: Vec<u8>,
}

/// The webhook courier: the HTTP client and every `[[webhook]]` with its secret.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    hooks: Arc<HashMap<String, Hook>>,
}

impl Webhooks {
    /// Resolves every webhook's secret (file or environment) and builds the client; the
    /// first problem, naming the webhook (never the secret).
    pub fn from_config(cfg: &Config) -> Result<Webhooks, String> {
        let mut hooks = HashMap::new();
        for w in &cfg.webhooks {
            let name = format!("webhook {}", w.id);
            let text = match (&w.secret_file, &w.secret_env) {
                (Some(f), _) => {
                    read_private(f).map_err(|e| format!("{name}: {}: {e}", f.display()))?
                }
                (None, Some(v)) => std::env::var(v)
                    .map_err(|_| format!("{name}: environment variable {v} is not set"))?,
                (None, None) => return Err(format!("{name}: no secret")),
            };
            let secret = parse_secret(&text).map_err(|e| format!("{name}: {e}"))?;
            let url = check_url(&w.url).map_err(|e| format!("{name}: url {e}"))?;
            hooks.insert(w.id.clone(), Hook { url, secret });
        }
        // reqwest is built without a crypto provider of its own: rustls's ring, as everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(cfg.outbox.ack_timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("huren/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Webhooks {
            client,
            hooks: Arc::new(hooks),
        })
    }
}

impl Courier for Webhooks {
    const WHAT: &'static str = "alert notice";

    fn outbox(gw: &Gateway) -> &Outbox {
        gw.ingest_store().webhooks()
    }

    async fn attempt(&self, _gw: &Gateway, e: &OutboxEntry) -> Result<(String, String), Failure> {
        let Some(h) = self.hooks.get(&e.destination) else {
            return Err(format!("webhook {} is not configured", e.destination));
        };
        let ts = Utc::now().timestamp();
        let body = e.message.clone().into_bytes();
        let sig = sign(&h.secret, &e.msh10, ts, &body);
        let r = self
            .client
            .post(h.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &e.msh10)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await;
        answer(r, &e.msh10).await
    }
}

/// An HTTP courier's attempt as the outbox records it: a 2xx is `(status, control id)`;
/// anything else is why not (`timeout`, `connect: …`, `send: …`, `HTTP 503: …` with the
/// first characters of the receiver's words).
pub(crate) async fn answer(
    r: Result<reqwest::Response, reqwest::Error>,
    control: &str,
) -> Result<(String, String), Failure> {
    match r {
        Err(err) if err.is_timeout() => Err("timeout".into()),
        Err(err) if err.is_connect() => Err(format!("connect: {}", root_cause(&err))),
        Err(err) => Err(format!("send: {}", root_cause(&err))),
        Ok(resp) if resp.status().is_success() => {
            Ok((resp.status().as_u16().to_string(), control.to_string()))
        }
        Ok(resp) => {
            let status = resp.status();
            let text: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect();
            Err(if text.trim().is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                format!("HTTP {}: {}", status.as_u16(), text.trim())
            })
        }
    }
}

/// A secret file's text: refused when others may read it or group or others may write it.
pub(crate) fn read_private(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o026 != 0 {
            return Err(format!(
                "mode {mode:03o}: it must not be readable by others nor writable by group or others (chmod 600 or 640)"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The innermost error's words (reqwest wraps the I/O error).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string().chars().take(MAX_REASON).collect()
}

/// The message id of a notice (`webhook-id`): stable, the same on every attempt.
pub fn notice_id(a: &Alert, n: &Notice) -> String {
    format!("{}.{}", a.raised.id, n.key)
}

/// The JSON body of a notice: no patient, no free text a clinician typed.
pub fn payload(cfg: &Config, w: &WebhookConfig, a: &Alert, n: &Notice) -> String {
    let r = &a.raised;
    let (group_name, _, phone) = cfg.alerting.group(&r.group).unwrap_or(("", "", None));
    let institution = cfg.institution(&r.institution);
    let institution_name = institution.map(|i| i.name.as_str()).unwrap_or("");
    let institution_phone = institution.and_then(|i| i.phone.as_deref());
    let path = format!("/ui/alerts#{}", r.id);
    let link = match &w.link_base {
        Some(b) => format!("{}{path}", b.trim_end_matches('/')),
        None => path,
    };
    let (state, decision, by) = match &a.state {
        State::Open => ("open", None, None),
        State::Acknowledged { by, decision, .. } => {
            ("acknowledged", Some(decision.as_str()), Some(by.as_str()))
        }
        State::Cancelled { by, .. } => ("cancelled", None, Some(by.as_str())),
    };
    let kind_zh = match r.kind {
        huren_alerting::AlertKind::Stemi => "STEMI预警",
        huren_alerting::AlertKind::LabCritical => "危急值",
    };
    let what = match n.kind {
        "alert.raised" => String::new(),
        "alert.escalated" => format!("（第{}次升级）", n.step),
        "alert.acknowledged" => format!("（已确认：{}）", decision.unwrap_or("")),
        _ => "（已撤销）".to_string(),
    };
    let text = format!(
        "【{kind_zh}】{}{what} {} — {}{} 请登录查看：{link}",
        institution_name_or(institution_name, &r.institution),
        r.summary,
        group_name,
        phone.map(|p| format!("（{p}）")).unwrap_or_default(),
    );
    json!({
        "type": n.kind,
        "timestamp": n.at,
        "data": {
            "alert": r.id,
            "kind": r.kind.as_str(),
            "state": state,
            "institution": r.institution,
            "institution_name": institution_name,
            "institution_phone": institution_phone,
            "group": r.group,
            "group_name": group_name,
            "group_phone": phone,
            "summary": r.summary,
            "raised_at": r.at,
            "step": n.step,
            "tiers": n.tiers,
            "decision": decision,
            "by": by,
            "link": link,
            "text": text,
        }
    })
    .to_string()
}

fn institution_name_or<'a>(name: &'a str, code: &'a str) -> &'a str {
    if name.is_empty() {
        code
    } else {
        name
    }
}

impl Gateway {
    /// Enqueues the notices of an alert that are not in the webhook outbox, for every
    /// webhook of its group; with `since`, only notices from then on. How many it enqueued.
    /// Durable when it returns. Blocking (fsync).
    pub fn enqueue_notices(
        &self,
        a: &Alert,
        since: Option<DateTime<Utc>>,
    ) -> Result<usize, StoreError> {
        let outbox = self.ingest_store().webhooks();
        let mut n = 0;
        for w in self
            .config
            .webhooks
            .iter()
            .filter(|w| w.group == a.raised.group)
        {
            for notice in notices(a) {
                if since.is_some_and(|s| notice.at < s) {
                    continue;
                }
                let id = notice_id(a, &notice);
                let entry = format!("{}/{id}", w.id);
                if outbox.contains(&entry) {
                    continue;
                }
                let body = payload(&self.config, w, a, &notice);
                if outbox.enqueue(&entry, &w.id, &id, body, Utc::now())? {
                    n += 1;
                    tracing::info!(alert = %a.raised.id, webhook = %w.id, notice = %notice.key, "alert notice queued for the webhook");
                }
            }
        }
        Ok(n)
    }

    /// The start-up reconciliation: the notices of the last [`RECONCILE_WINDOW`] that are
    /// not queued (a crash between an alert's event and its notice). How many it enqueued.
    pub fn reconcile_notices(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        if self.config.webhooks.is_empty() {
            return Ok(0);
        }
        let since = now - RECONCILE_WINDOW;
        let mut n = 0;
        for a in self.ingest_store().alerts().select(|_| true) {
            n += self.enqueue_notices(&a, Some(since))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(check_url("https://relay.example/x").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://relay.example/x").is_err());
        assert!(check_url("ftp://relay.example/x").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        assert!(parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(parse_secret("whsec_c2hvcnQ=").is_err());
        assert!(parse_secret("whsec_***").is_err());
    }

    /// The Standard Webhooks specification's own example (its README's test vector).
    #[test]
    fn signature_matches_the_specification() {
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
