//! The MLLP listener: plain TCP or TLS (rustls), one message in flight per connection, ACKs
//! in order, each ACK sent only after the group commit holding its message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use huren_hl7::mllp::{FrameBudget, MllpCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;

use crate::pipeline::Gateway;
use crate::tls::{peer_institution, TlsSetup};

/// Runs the MLLP accept loop until the task is dropped.
///
/// A connection permit (`max_connections`) belongs to an established connection only: over
/// TLS it is taken after the handshake, which is bounded by `handshake_timeout_secs` and
/// counted against its own cap (`max_handshakes`), so silent sockets that never finish a
/// handshake cannot lock out a peer with a valid certificate. Over either cap a new socket is
/// closed at once.
pub async fn serve(listener: TcpListener, gw: Gateway, tls: Option<Arc<TlsSetup>>) {
    let limit = Arc::new(Semaphore::new(gw.config.mllp.max_connections.max(1)));
    let handshakes = Arc::new(Semaphore::new(gw.config.mllp.max_handshakes.max(1)));
    let handshake_timeout = Duration::from_secs(gw.config.mllp.handshake_timeout_secs.max(1));
    // Frames in progress on every connection share one memory budget (issue 16 finding 5).
    let budget = FrameBudget::new(
        gw.config.mllp.frame_budget_mib.saturating_mul(1 << 20),
        gw.config.mllp.frame_own_kib.saturating_mul(1 << 10),
    );
    // Refused TLS handshakes are logged once per peer address and window, with the count of
    // the previous window's (a peer retrying in a loop writes one line a minute, not one per
    // attempt).
    let refusals = Arc::new(std::sync::Mutex::new(huren_access::AuthFailures::new(
        u64::MAX,
        chrono::Duration::seconds(i64::from(
            gw.config.access.auth_failure_window_seconds.max(1),
        )),
        100_000,
    )));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "mllp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let gw = gw.clone();
        let refusals = refusals.clone();
        let refused = move |what: &str, e: &dyn std::fmt::Display| {
            let key = huren_access::peer_key(peer.ip());
            let f = refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fail(&key, chrono::Utc::now());
            if let Some(n) = f.record {
                tracing::warn!(%peer, failures = n, error = %e, "{what}");
            }
        };
        let Some(t) = tls.clone() else {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "mllp connection limit reached; refusing");
                drop(sock);
                continue;
            };
            let budget = budget.clone();
            tokio::spawn(async move {
                let _permit = permit;
                connection(sock, gw, None, budget).await
            });
            continue;
        };
        let Ok(shaking) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "mllp TLS handshakes in progress at their limit; refusing");
            drop(sock);
            continue;
        };
        let limit = limit.clone();
        let budget = budget.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, t.acceptor.accept(sock)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return refused("mllp TLS handshake failed", &e),
                    Err(_) => return refused("mllp TLS handshake failed", &"handshake timeout"),
                };
            drop(shaking);
            let inst = match peer_institution(&t, stream.get_ref().1) {
                Ok(i) => i,
                Err(e) => return refused("mllp TLS client refused", &e),
            };
            let Ok(_permit) = limit.try_acquire_owned() else {
                tracing::warn!(%peer, "mllp connection limit reached; refusing");
                return;
            };
            connection(stream, gw, inst, budget).await
        });
    }
}

async fn connection<S>(stream: S, gw: Gateway, peer_inst: Option<String>, budget: Arc<FrameBudget>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let idle = Duration::from_secs(gw.config.mllp.idle_timeout_secs.max(1));
    let mut framed = Framed::new(
        stream,
        MllpCodec::with_budget(gw.config.mllp.max_frame, budget),
    );
    loop {
        let next = tokio::time::timeout(idle, framed.next()).await;
        if let Some(d) = framed.codec_mut().take_discarded() {
            // A frame lost its end block (a new start block came first): dropped unanswered,
            // the next frame is read normally. Counts only, never the bytes (patient data).
            tracing::warn!(
                frames = d.frames,
                bytes = d.bytes,
                "mllp frame without end block discarded; resynchronised at the next start block"
            );
        }
        let frame = match next {
            Err(_) => {
                tracing::debug!("mllp idle timeout");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "mllp framing error; closing connection");
                break;
            }
            Ok(Some(Ok(f))) => f,
        };
        let out = gw.ingest_hl7(&frame, None, peer_inst.as_deref()).await;
        tracing::debug!(outcome = out.outcome, "mllp message handled");
        if let Err(e) = framed.send(Bytes::from(out.ack)).await {
            tracing::warn!(error = %e, "mllp ACK could not be sent");
            break;
        }
    }
}
