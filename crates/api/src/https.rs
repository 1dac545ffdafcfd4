//! The HTTPS listener: our own accept loop (tokio-rustls + hyper), because `axum::serve`
//! hides the TLS session. The institution proven by a client certificate travels into every
//! request of the connection as a [`PeerInstitution`] extension; a refused handshake is
//! audited.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::ApiState;
use huren_ingest::tls::{peer_institution, TlsSetup};

/// The institution a verified client certificate maps to (`None`: no certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInstitution(pub Option<String>);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router, tls: Arc<TlsSetup>, st: ApiState) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "https accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let (router, tls, st) = (router.clone(), tls.clone(), st.clone());
        tokio::spawn(async move {
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
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(sock)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return refused(e.to_string()).await,
                    Err(_) => return refused("handshake timeout".into()).await,
                };
            let inst = match peer_institution(&tls, stream.get_ref().1) {
                Ok(i) => i,
                Err(e) => return refused(e).await,
            };
            let app = router
                .layer(axum::Extension(PeerInstitution(inst)))
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                app.clone().oneshot(req)
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "https connection ended");
            }
        });
    }
}
