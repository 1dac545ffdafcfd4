//! Signed reports going back to the acquiring institution (issue 17, docs/outbox.md): the
//! ORU^R01 of a signed ECG or imaging report is enqueued in the store's durable outbox (once per report)
//! before the signature is answered, and a worker delivers it over MLLP to the institution's
//! `result_destination`, one message at a time per destination: AA (or CA) → delivered;
//! AE/AR, garbage, no answer, no connection → retried with backoff, the same bytes and MSH-10
//! every time, parked after `[outbox] max_attempts`. Delivered is recorded before the next
//! message is considered; a crash between the receiver's AA and that record resends the
//! message once after restart (at least once: the receiver sees the same MSH-10).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use huren_model::ContentHash;
use huren_store::{Outbox, OutboxEntry, OutboxEvent, StoreError};
use tokio_util::codec::Framed;

use crate::Gateway;

/// MSH-10 of the message carrying a report: the first 20 hex digits of its hash (stable, so
/// every retry and a re-enqueue after a crash carry the same one).
pub fn msh10_of(report: &ContentHash) -> String {
    report.hex()[..20].to_string()
}

/// How an attempt ended without delivering.
pub type Failure = String;

/// Most characters of a receiver's error text kept as the attempt's result.
const MAX_REASON: usize = 200;

impl Gateway {
    /// Enqueues the ORU^R01 of a stored signed report for its institution's result
    /// destination; `Ok(false)` when the institution has none or the report is queued
    /// already. Durable when it returns `Ok`. Blocking (fsync).
    pub fn enqueue_signed(&self, report: &ContentHash) -> Result<bool, StoreError> {
        let store = self.ingest_store();
        let id = report.to_string();
        if store.outbox().contains(&id) {
            return Ok(false);
        }
        let Some(r) = store.report_shared(report)? else {
            return Err(StoreError::Corrupt(format!("report {id} is not stored")));
        };
        let institution = r.source.institution.clone();
        if self.config.result_destination(&institution).is_none() {
            return Ok(false);
        }
        let now = Utc::now();
        let msh10 = msh10_of(report);
        let message = huren_hl7::build_oru(
            &r,
            &huren_hl7::OruContext {
                control_id: &msh10,
                now: now.with_timezone(&chrono_tz::Asia::Shanghai).fixed_offset(),
            },
        )
        .map_err(|e| StoreError::Corrupt(format!("report {id}: {e}")))?;
        let new = store
            .outbox()
            .enqueue(&id, &institution, &msh10, message, now)?;
        if new {
            tracing::info!(report = %id, destination = %institution, msh10 = %msh10, "signed report queued for its institution");
        }
        Ok(new)
    }

    /// Enqueues the signed (and amended) reports of completed tasks that are not in the outbox (a crash
    /// after the signature and before the enqueue, or a destination configured since): run
    /// at start-up. Returns how many it enqueued.
    pub fn reconcile_outbox(&self) -> Result<usize, StoreError> {
        let store = self.ingest_store();
        let mut n = 0;
        for t in store
            .tasks()
            .select(|t| matches!(t.state, huren_workflow::State::Completed { .. }))
        {
            let huren_workflow::State::Completed { report, .. } = &t.state else {
                continue;
            };
            if self.config.result_destination(&t.institution).is_none() {
                continue;
            }
            // The signed version, then each amendment, in order.
            for report in std::iter::once(report).chain(t.amendments.iter().map(|a| &a.report)) {
                let Ok(hash) = report.parse::<ContentHash>() else {
                    continue;
                };
                if !store.outbox().contains(report) && self.enqueue_signed(&hash)? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// The TLS client of `mllps://` destinations (`[outbox.tls]`), when configured.
pub type OutboxTls = Option<Arc<rustls::ClientConfig>>;

/// Connects to a destination (TLS for `mllps://`), sends one message and waits for its ACK.
async fn attempt(
    d: &crate::config::Destination,
    tls: &OutboxTls,
    e: &OutboxEntry,
    timeout: Duration,
) -> Result<(String, String), Failure> {
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&d.addr)).await
    {
        Err(_) => return Err("connect: timeout".into()),
        Ok(Err(err)) => return Err(format!("connect: {err}")),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    if !d.tls {
        return exchange(stream, e, timeout).await;
    }
    let Some(cfg) = tls else {
        return Err("tls: mllps:// needs [outbox.tls]".into());
    };
    let name = rustls::pki_types::ServerName::try_from(d.host.clone())
        .map_err(|err| format!("tls: server name {:?}: {err}", d.host))?;
    let connector = tokio_rustls::TlsConnector::from(cfg.clone());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Err(_) => Err("tls: handshake timeout".into()),
        Ok(Err(err)) => Err(format!("tls: {err}")),
        Ok(Ok(s)) => exchange(s, e, timeout).await,
    }
}

/// Sends one message on a connected stream and waits for its ACK: `Ok((MSA-1, MSA-2))` for
/// AA/CA, else why not.
async fn exchange<S>(
    stream: S,
    e: &OutboxEntry,
    timeout: Duration,
) -> Result<(String, String), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, huren_hl7::mllp::MllpCodec::new(1 << 20));
    let bytes = Bytes::from(e.message.clone().into_bytes());
    match tokio::time::timeout(timeout, framed.send(bytes)).await {
        Err(_) => return Err("send: timeout".into()),
        Ok(Err(err)) => return Err(format!("send: {err}")),
        Ok(Ok(())) => {}
    }
    let frame = match tokio::time::timeout(timeout, framed.next()).await {
        Err(_) => return Err("timeout waiting for the ACK".into()),
        Ok(None) => return Err("connection closed without an ACK".into()),
        Ok(Some(Err(err))) => return Err(format!("bad ACK frame: {err}")),
        Ok(Some(Ok(f))) => f,
    };
    let msg = huren_hl7::Message::parse(&frame, Some(huren_hl7::Charset::Utf8))
        .map_err(|_| "the answer is not an HL7 message".to_string())?;
    let Some(msa) = msg.segments().find(|s| s.id() == "MSA") else {
        return Err("the answer has no MSA segment".into());
    };
    let code = msa.field(1).trim().to_ascii_uppercase();
    let ctl = msa.field(2).trim().to_string();
    if ctl != e.msh10 {
        return Err(format!(
            "ACK for another message (MSA-2 {:?})",
            ctl.chars().take(40).collect::<String>()
        ));
    }
    match code.as_str() {
        "AA" | "CA" => Ok((code, ctl)),
        "AE" | "AR" | "CE" | "CR" => {
            // The receiver's words: MSA-3, else ERR-8 (v2.5 user message), else ERR-3.
            let err = msg.segments().find(|s| s.id() == "ERR");
            let text = [
                Some(msa.field(3).to_string()),
                err.as_ref().map(|s| s.field(8).to_string()),
                err.as_ref().map(|s| s.field(3).to_string()),
            ]
            .into_iter()
            .flatten()
            .find(|t| !t.trim().is_empty())
            .unwrap_or_default();
            let text: String = text.chars().take(MAX_REASON).collect();
            Err(if text.is_empty() {
                code
            } else {
                format!("{code}: {text}")
            })
        }
        other => Err(format!(
            "unknown acknowledgement code {:?}",
            other.chars().take(10).collect::<String>()
        )),
    }
}

/// A way out of an outbox: the MLLP courier of signed results ([`Mllp`]) or the webhook
/// courier of alert notices (`crate::webhook`). The delivery loop ([`deliver`]) is the same
/// for both: per destination one message at a time, oldest first; delivered, retried with
/// backoff, or parked after `[outbox] max_attempts`, each recorded durably before the next.
pub trait Courier: Clone + Send + Sync + 'static {
    /// What it carries, for the logs (`result`, `alert notice`).
    const WHAT: &'static str;
    /// The outbox it delivers from.
    fn outbox(gw: &Gateway) -> &Outbox;
    /// One attempt: `Ok((code, control id))` when the receiver took it, else why not.
    fn attempt(
        &self,
        gw: &Gateway,
        e: &OutboxEntry,
    ) -> impl std::future::Future<Output = Result<(String, String), Failure>> + Send;
}

/// Signed results over MLLP (TLS for `mllps://`) to each institution's `result_destination`.
#[derive(Clone)]
pub struct Mllp {
    tls: OutboxTls,
}

impl Mllp {
    /// The courier; `tls` is [`crate::tls::outbox_client`]'s, for `mllps://` destinations.
    pub fn new(tls: OutboxTls) -> Mllp {
        Mllp { tls }
    }
}

impl Courier for Mllp {
    const WHAT: &'static str = "result";

    fn outbox(gw: &Gateway) -> &Outbox {
        gw.ingest_store().outbox()
    }

    async fn attempt(&self, gw: &Gateway, e: &OutboxEntry) -> Result<(String, String), Failure> {
        let timeout = Duration::from_secs(gw.config.outbox.ack_timeout_secs.max(1));
        match gw.config.result_destination(&e.destination) {
            Some(d) => attempt(&d, &self.tls, e, timeout).await,
            None => Err(format!(
                "institution {} has no result_destination configured",
                e.destination
            )),
        }
    }
}

/// Records what one attempt did; `false` when recording failed (the worker stops for now).
fn record<C: Courier>(
    gw: &Gateway,
    e: &OutboxEntry,
    out: Result<(String, String), Failure>,
) -> bool {
    let outbox = C::outbox(gw);
    let cfg = &gw.config.outbox;
    let what = C::WHAT;
    let now: DateTime<Utc> = Utc::now();
    let result = match out {
        Ok((ack_code, ack_control_id)) => {
            let r = outbox.record(OutboxEvent::Delivered {
                id: e.id.clone(),
                at: now,
                ack_code,
                ack_control_id,
            });
            if r.is_ok() {
                tracing::info!(entry = %e.id, destination = %e.destination, control_id = %e.msh10, attempts = e.attempts + 1, "{what} delivered");
            }
            r
        }
        Err(reason) => {
            let attempts = e.attempts + 1;
            let kind = reason.split(':').next().unwrap_or("").to_string();
            let next_at = now
                + chrono::Duration::from_std(cfg.backoff(attempts))
                    .unwrap_or(chrono::Duration::seconds(300));
            let r = outbox.record(OutboxEvent::Attempted {
                id: e.id.clone(),
                at: now,
                result: reason.clone(),
                next_at,
            });
            if r.is_ok() && attempts >= cfg.max_attempts {
                tracing::warn!(entry = %e.id, destination = %e.destination, control_id = %e.msh10, attempts, result = %kind, "{what} parked: an operator has to look (GET /api/v1/outbox?state=parked)");
                outbox.record(OutboxEvent::Parked {
                    id: e.id.clone(),
                    at: now,
                    reason,
                })
            } else {
                if r.is_ok() {
                    tracing::info!(entry = %e.id, destination = %e.destination, control_id = %e.msh10, attempts, result = %kind, "{what} not delivered; will retry");
                }
                r
            }
        }
    };
    match result {
        Ok(_) => true,
        Err(err) => {
            tracing::error!(entry = %e.id, error = %err, "outbox event not recorded");
            false
        }
    }
}

/// Delivers the due messages of one destination, oldest first, one at a time. On a cluster
/// only the node holding the destination's lease delivers there; it reads each message's
/// newest events before sending it, so a message another node delivered is not sent again.
async fn drain<C: Courier>(gw: Gateway, destination: String, courier: C) {
    let g = gw.clone();
    let d = destination.clone();
    let lease = tokio::task::spawn_blocking(move || C::outbox(&g).lease(&d)).await;
    let _lease = match lease {
        Ok(Ok(Some(l))) => l,
        // Another node delivers there now.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(destination = %destination, error = %e, "no delivery lease");
            return;
        }
        Err(_) => return,
    };
    loop {
        let now = Utc::now();
        let Some(e) = C::outbox(&gw)
            .due(now)
            .into_iter()
            .find(|e| e.destination == destination)
        else {
            return;
        };
        let g = gw.clone();
        let id = e.id.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            let outbox = C::outbox(&g);
            outbox.refresh(&id).map(|_| outbox.get(&id))
        })
        .await;
        let e = match fresh {
            Ok(Ok(Some(e))) if e.state == huren_store::OutboxState::Pending => {
                if e.next_at > now {
                    // Tried elsewhere meanwhile: it waits for its retry, and so do the rest.
                    return;
                }
                e
            }
            // Delivered or parked elsewhere meanwhile: look at the next one.
            Ok(Ok(_)) => continue,
            _ => return,
        };
        let out = courier.attempt(&gw, &e).await;
        let g = gw.clone();
        let recorded = tokio::task::spawn_blocking(move || record::<C>(&g, &e, out))
            .await
            .unwrap_or(false);
        if !recorded {
            return;
        }
    }
}

/// The delivery worker of one outbox (spawned by `huren serve`, once per courier): every
/// 200 ms, starts a drain for each destination with due messages that has none running.
pub async fn deliver<C: Courier>(gw: Gateway, courier: C) {
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due: HashSet<String> = C::outbox(&gw)
            .due(Utc::now())
            .into_iter()
            .map(|e| e.destination)
            .collect();
        for d in due {
            {
                let Ok(mut b) = busy.lock() else { return };
                if !b.insert(d.clone()) {
                    continue;
                }
            }
            let (gw, courier) = (gw.clone(), courier.clone());
            let guard = Busy {
                set: busy.clone(),
                destination: d.clone(),
            };
            tokio::spawn(async move {
                // The guard clears the flag however the drain ends (a panic included), so a
                // destination is never left marked busy with nobody draining it.
                let _guard = guard;
                drain(gw, d, courier).await;
            });
        }
    }
}

/// Marks one destination as being drained; clears the mark when dropped.
struct Busy {
    set: Arc<Mutex<HashSet<String>>>,
    destination: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut b = match self.set.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        b.remove(&self.destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn entry() -> OutboxEntry {
        OutboxEntry {
            id: "blake3:00".into(),
            destination: "FX-SQ01".into(),
            msh10: "0123456789abcdef0123".into(),
            message: "MSH|^~\\&|HUREN|fx-ecg||FX-SQ01|20261206||ORU^R01^ORU_R01|0123456789abcdef0123|P|2.5.1\r".into(),
            state: huren_store::OutboxState::Pending,
            attempts: 0,
            last_result: None,
            created_at: Utc::now(),
            last_at: None,
            next_at: Utc::now(),
            ack_code: None,
            ack_control_id: None,
        }
    }

    /// A one-shot receiver answering `answer` (raw bytes; `None`: silence) to the first frame.
    async fn receiver(answer: Option<&'static [u8]>) -> crate::config::Destination {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut b = [0u8; 1024];
            while !buf.ends_with(&[0x1c, 0x0d]) {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            match answer {
                Some(a) => {
                    let _ = s.write_all(a).await;
                }
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        });
        crate::config::Destination::parse(&format!("mllp://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn acks_are_read_strictly() {
        let t = Duration::from_secs(2);
        let e = entry();
        let aa: &'static [u8] = b"\x0bMSH|^~\\&|HIS|X|HUREN||20261206||ACK|1|P|2.5.1\rMSA|AA|0123456789abcdef0123\r\x1c\r";
        let d = receiver(Some(aa)).await;
        assert_eq!(
            attempt(&d, &None, &e, t).await,
            Ok(("AA".into(), "0123456789abcdef0123".into()))
        );
        let other: &'static [u8] =
            b"\x0bMSH|^~\\&|HIS|X|HUREN||20261206||ACK|1|P|2.5.1\rMSA|AA|SOMETHING-ELSE\r\x1c\r";
        let d = receiver(Some(other)).await;
        let r = attempt(&d, &None, &e, t).await.unwrap_err();
        assert!(r.starts_with("ACK for another message"), "{r}");
        let ar: &'static [u8] = b"\x0bMSH|^~\\&|HIS|X|HUREN||20261206||ACK|1|P|2.5.1\rMSA|AR|0123456789abcdef0123\rERR||||E||||\xe6\x82\xa3\xe8\x80\x85\xe4\xb8\x8d\xe5\xad\x98\xe5\x9c\xa8\r\x1c\r";
        let d = receiver(Some(ar)).await;
        assert_eq!(
            attempt(&d, &None, &e, t).await,
            Err("AR: 患者不存在".into())
        );
        let d = receiver(Some(b"\x0bhello\x1c\r")).await;
        let r = attempt(&d, &None, &e, t).await.unwrap_err();
        assert_eq!(r, "the answer is not an HL7 message");
        let d = receiver(None).await;
        let r = attempt(&d, &None, &e, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(r, "timeout waiting for the ACK");
        let d = receiver(Some(b"")).await;
        let r = attempt(&d, &None, &e, t).await.unwrap_err();
        assert_eq!(r, "connection closed without an ACK");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = crate::config::Destination::parse(&format!("mllp://127.0.0.1:{port}")).unwrap();
        let r = attempt(&d, &None, &e, t).await.unwrap_err();
        assert!(r.starts_with("connect:"), "{r}");
    }
}
