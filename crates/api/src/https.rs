//! The HTTP and HTTPS listeners: our own accept loops (tokio-rustls + hyper), because
//! `axum::serve` hides the TLS session and has neither a header-read timeout nor a connection
//! cap. The institution proven by a client certificate travels into every request of the
//! connection as a [`PeerInstitution`] extension; a refused handshake is audited. The peer's
//! address reaches handlers as `ConnectInfo<SocketAddr>` on both.
//!
//! Budgets ([`Limits`], `[http]`): at most `max_connections` connections per listener (a new
//! one over the cap is closed at once), and a request's headers must arrive within
//! `header_read_timeout` (the first request's counted from the accept, later ones from the end
//! of the previous response), else the connection is closed. Idle sockets therefore hold a
//! slot for at most that long, and the process's descriptors stay bounded.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::api::ApiState;
use huren_ingest::tls::{peer_institution, TlsSetup};

/// The institution a verified client certificate maps to (`None`: no certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInstitution(pub Option<String>);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP preface of prior-knowledge HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A listener's budgets (`[http]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Time a request's headers (and a TLS handshake's first bytes) may take.
    pub header_read_timeout: Duration,
}

/// Accepts connections within the cap; `None` for a socket closed at once over the cap.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    what: &str,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let (sock, peer) = match listener.accept().await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "{what} accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "{what} connection limit reached; closed");
        return None;
    };
    let _ = sock.set_nodelay(true);
    Some((sock, peer, permit))
}

/// Serves one connection with HTTP/1.1 (or HTTP/2 when `h2`), the header-read timeout on.
async fn connection<I>(io: I, app: Router, peer: SocketAddr, h2: bool, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let svc =
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| app.clone().oneshot(req));
    let done = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(io), svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
    };
    if let Err(e) = done {
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// Whether a plain connection opens with the HTTP/2 preface (prior knowledge): peeks until the
/// bytes decide, within `timeout`. `None`: closed, or nothing decisive in time.
async fn is_h2(sock: &TcpStream, timeout: Duration) -> Option<bool> {
    let end = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(end, sock.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A prefix of the preface so far: wait for more (peek returns what it has at once).
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `router` over plain HTTP (loopback only, checked by the caller) until the task is
/// dropped.
pub async fn serve_plain(listener: TcpListener, router: Router, limits: Limits) {
    let limit = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Some((sock, peer, permit)) = accept(&listener, &limit, "http").await else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(h2) = is_h2(&sock, limits.header_read_timeout).await else {
                return;
            };
            connection(sock, router, peer, h2, limits).await
        });
    }
}

/// Serves `router` over TLS until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<TlsSetup>,
    st: ApiState,
    limits: Limits,
) {
    let limit = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Some((sock, peer, permit)) = accept(&listener, &limit, "https").await else {
            continue;
        };
        let (router, tls, st) = (router.clone(), tls.clone(), st.clone());
        tokio::spawn(async move {
            let _permit = permit;
            // Aggregated per peer address and window like failed authentication: the first
            // refusal of a window is audited (and logged), later ones are counted.
            let refused = |why: String| {
                let st = st.clone();
                async move {
                    tracing::debug!(%peer, error = %why, "https client refused");
                    let rec = huren_audit::AuditRecord {
                        actor: format!("peer:{}", peer.ip()),
                        action: "tls_handshake".into(),
                        outcome: format!("denied: {why}"),
                        ..Default::default()
                    };
                    if st
                        .gate
                        .failed_authentication(Some(peer.ip()), true, rec)
                        .await
                        .is_err()
                    {
                        tracing::warn!(%peer, "refused TLS handshake not audited");
                    }
                }
            };
            let handshake =
                HANDSHAKE_TIMEOUT.min(limits.header_read_timeout.max(Duration::from_secs(1)));
            let stream = match tokio::time::timeout(handshake, tls.acceptor.accept(sock)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return refused(e.to_string()).await,
                Err(_) => return refused("handshake timeout".into()).await,
            };
            let inst = match peer_institution(&tls, stream.get_ref().1) {
                Ok(i) => i,
                Err(e) => return refused(e).await,
            };
            // No ALPN is offered, so the client speaks HTTP/1.1; h2 only when ALPN says so.
            let h2 = stream.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
            let app = router.layer(axum::Extension(PeerInstitution(inst)));
            connection(stream, app, peer, h2, limits).await
        });
    }
}
