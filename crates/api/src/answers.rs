//! The answer cache of the recognition API: evaluated, serialised (and gzip-compressed)
//! answers of `GET /api/v1/patients/{id}/results` and `POST /api/v1/recognition/check`.
//!
//! An answer is a pure function of the patient's current reports, the rules, the request's
//! context (requester, encounter, authorisation, demographics, intended order, filters) and
//! the time. The cache key holds everything but the reports and the time; an entry is used
//! only while
//! - the patient's generation counter ([`huren_store::Store::person_generation`], read
//!   before the reports were) has not moved: no commit changed the patient's reports, and
//! - the time is before the answer's `valid_until` ([`huren_recognition::stable_until_all`]):
//!   no validity window has closed since it was evaluated.
//!
//! Authentication, authorisation and the audit record are per request and never cached.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use huren_model::ContentHash;

/// One evaluated answer.
pub struct Answer {
    /// Person counter read before the reports were.
    pub generation: u64,
    /// The answer may change by time alone from this instant on.
    pub valid_until: Option<DateTime<FixedOffset>>,
    /// The JSON body.
    pub body: Bytes,
    gzip: OnceLock<Bytes>,
    /// Report hashes whose content the answer returns (audit).
    pub returned: Vec<String>,
    /// BLAKE3 of the canonical JSON of `returned`: audit records after the first name the
    /// set instead of repeating it.
    pub returned_set: Option<String>,
    /// What the audit record says about the answer (`advice`, …).
    pub audit_detail: serde_json::Value,
    /// The full list is in the audit log (a record naming the set was made durable).
    listed: AtomicBool,
}

impl Answer {
    pub fn new(
        generation: u64,
        valid_until: Option<DateTime<FixedOffset>>,
        body: Vec<u8>,
        mut returned: Vec<String>,
        audit_detail: serde_json::Value,
    ) -> Answer {
        returned.sort();
        returned.dedup();
        let returned_set = (!returned.is_empty()).then(|| {
            let canon = serde_json::to_vec(&returned).unwrap_or_default();
            ContentHash::of(&canon).to_string()
        });
        Answer {
            generation,
            valid_until,
            body: Bytes::from(body),
            gzip: OnceLock::new(),
            returned,
            returned_set,
            audit_detail,
            listed: AtomicBool::new(false),
        }
    }

    /// Whether the answer may still be served at `now` for a person whose counter is
    /// `generation`.
    pub fn is_current(&self, generation: u64, now: DateTime<FixedOffset>) -> bool {
        self.generation == generation && self.valid_until.is_none_or(|u| now < u)
    }

    /// Fills the audit record's `returned` (the full list the first time, the set's hash
    /// after that) and `detail`.
    pub fn audit_into(&self, rec: &mut huren_audit::AuditRecord) {
        rec.returned_set = self.returned_set.clone();
        if !self.listed.load(Ordering::Acquire) {
            rec.returned = self.returned.clone();
        }
        crate::api::merge(&mut rec.detail, self.audit_detail.clone());
    }

    /// Notes that a record listing the set in full is durable.
    pub fn listed(&self) {
        self.listed.store(true, Ordering::Release);
    }

    fn gzip(&self) -> &Bytes {
        self.gzip.get_or_init(|| {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.body.len() / 8),
                flate2::Compression::default(),
            );
            // Writing into a Vec cannot fail.
            match enc.write_all(&self.body).and_then(|_| enc.finish()) {
                Ok(v) => Bytes::from(v),
                Err(_) => Bytes::new(),
            }
        })
    }

    /// Compresses now (off the request path, when the answer is made).
    pub fn precompress(&self) {
        let _ = self.gzip();
    }

    /// The HTTP answer: gzip when the client accepts it, never stored by intermediaries.
    pub fn response(&self, request: &HeaderMap) -> Response {
        let gz = accepts_gzip(request)
            .then(|| self.gzip())
            .filter(|b| !b.is_empty());
        let mut res = match gz {
            Some(b) => {
                let mut r = b.clone().into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            None => self.body.clone().into_response(),
        };
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn weight(&self) -> u64 {
        let listed: usize = self.returned.iter().map(|s| s.len() + 24).sum();
        (self.body.len() + self.gzip.get().map_or(0, |b| b.len()) + listed + 512) as u64
    }
}

/// Whether `Accept-Encoding` admits gzip (RFC 9110 §12.5.3: `gzip` or `*` with a non-zero
/// q-value; an explicit `gzip;q=0` refuses it even when `*` is accepted).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut star = None;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q > 0.0),
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<[u8; 32], Arc<Answer>> for Weigh {
    fn weight(&self, _: &[u8; 32], a: &Arc<Answer>) -> u64 {
        a.weight()
    }
}

/// Answers by key, bounded by bytes.
pub struct AnswerCache {
    inner: Option<quick_cache::sync::Cache<[u8; 32], Arc<Answer>, Weigh>>,
}

impl AnswerCache {
    /// A cache of at most `bytes` of answers; `0` turns caching off.
    pub fn new(bytes: u64) -> AnswerCache {
        AnswerCache {
            inner: (bytes > 0).then(|| {
                // ~100 KB per answer on average is the planning figure for the item count.
                let items = (bytes / 100_000).clamp(16, 1 << 20) as usize;
                quick_cache::sync::Cache::with_weighter(items, bytes, Weigh)
            }),
        }
    }

    /// The key of a request: everything the answer depends on except the reports and time.
    pub fn key(parts: &impl serde::Serialize) -> [u8; 32] {
        let bytes = serde_json::to_vec(parts).unwrap_or_default();
        *ContentHash::of(&bytes).as_bytes()
    }

    /// A current answer for `key`, if any.
    pub fn get(
        &self,
        key: &[u8; 32],
        generation: u64,
        now: DateTime<FixedOffset>,
    ) -> Option<Arc<Answer>> {
        let found = self
            .inner
            .as_ref()?
            .get(key)
            .filter(|a| a.is_current(generation, now));
        huren_metrics::global().cache(found.is_some());
        found
    }

    /// The kept answer for `key`, or a new one from `make` (then kept).
    pub async fn get_or_make<E>(
        &self,
        key: [u8; 32],
        generation: u64,
        now: DateTime<FixedOffset>,
        make: impl std::future::Future<Output = Result<Answer, E>>,
    ) -> Result<Arc<Answer>, E> {
        if let Some(a) = self.get(&key, generation, now) {
            return Ok(a);
        }
        let a = Arc::new(make.await?);
        self.put(key, a.clone());
        Ok(a)
    }

    /// Keeps an answer (compressing it first, so the weight is right and no request pays).
    pub fn put(&self, key: [u8; 32], answer: Arc<Answer>) {
        if let Some(c) = &self.inner {
            answer.precompress();
            c.insert(key, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn accept_encoding_is_negotiated_by_q_value() {
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("*, gzip;q=0")));
        assert!(!accepts_gzip(&h("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn an_answer_is_current_until_its_person_moves_or_its_window_closes() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let a = Answer::new(
            7,
            Some(t("2026-01-02T00:00:00+08:00")),
            b"{}".to_vec(),
            vec!["b".into(), "a".into(), "a".into()],
            serde_json::Value::Null,
        );
        assert!(a.is_current(7, t("2026-01-01T23:59:59+08:00")));
        assert!(!a.is_current(8, t("2026-01-01T00:00:00+08:00")));
        assert!(!a.is_current(7, t("2026-01-02T00:00:00+08:00")));
        assert_eq!(a.returned, ["a", "b"]);
        // The first record lists the set; once that is durable, later ones only name it.
        let mut r = huren_audit::AuditRecord::default();
        a.audit_into(&mut r);
        assert_eq!(r.returned, ["a", "b"]);
        assert_eq!(r.returned_set, a.returned_set);
        a.listed();
        let mut r = huren_audit::AuditRecord::default();
        a.audit_into(&mut r);
        assert!(r.returned.is_empty());
        assert!(r.returned_set.is_some());
    }

    #[test]
    fn a_gzip_answer_inflates_to_the_body() {
        use std::io::Read;
        let body = br#"{"results":["x","x","x"]}"#.repeat(100);
        let a = Answer::new(0, None, body.clone(), vec![], serde_json::Value::Null);
        let res = a.response(&h("gzip"));
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        let gz = a.gzip().clone();
        assert!(gz.len() < body.len() / 10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let plain = a.response(&HeaderMap::new());
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
