//! Issue 17, results back to the institution: a signed ECG report is queued in the durable
//! outbox before the signature is answered and delivered as ORU^R01 over MLLP to the
//! institution's `result_destination` — a test receiver on 127.0.0.1 that answers with a
//! chosen code and records what it got. Receiver down then up → delivered once; kill -9 with
//! an undelivered result → delivered after restart, once; AE → retried with the same MSH-10,
//! then parked, the reason on the operator view (`GET /api/v1/outbox`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{repo, Server};
use crate::worklist::{audit_lines, call};

const SQ01_TOKEN: &str = "test-sq01-token";
const PRIVACY_TOKEN: &str = "test-privacy-token";

/// A port nothing listens on (yet).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A test HIS: answers every MLLP frame with `MSA|<code>|<MSH-10>|<text>` and records the
/// messages it got.
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub(crate) fn start(port: u16, code: &'static str, text: &'static str) -> Receiver {
        Receiver::start_tls(port, code, text, None)
    }

    /// The same over TLS when `tls` is given (rustls, blocking).
    fn start_tls(
        port: u16,
        code: &'static str,
        text: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Receiver {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        l.set_nonblocking(true).unwrap();
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let sock = match l.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut c: Box<dyn ReadWrite> = match &tls {
                    Some(cfg) => Box::new(rustls::StreamOwned::new(
                        rustls::ServerConnection::new(cfg.clone()).unwrap(),
                        sock,
                    )),
                    None => Box::new(sock),
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                        let frame: Vec<u8> = buf.drain(..end + 2).collect();
                        let start = frame.iter().position(|&b| b == 0x0b).map_or(0, |i| i + 1);
                        let msg = String::from_utf8_lossy(&frame[start..end]).to_string();
                        let msh10 = msg
                            .split('\r')
                            .next()
                            .and_then(|msh| msh.split('|').nth(9))
                            .unwrap_or("")
                            .to_string();
                        g.lock().unwrap().push(msg);
                        let ack = format!(
                            "\x0bMSH|^~\\&|HIS|FX-SQ01|HUREN||20261206120000+0800||ACK^R01^ACK|A-{msh10}|P|2.5.1\rMSA|{code}|{msh10}|{text}\r\x1c\r"
                        );
                        let _ = c.write_all(ack.as_bytes());
                    }
                }
            }
        });
        Receiver {
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The test configuration with FX-SQ01's results going to `127.0.0.1:port` and quick retries.
pub(crate) fn config(dir: &std::path::Path, port: u16, max_attempts: u32) -> String {
    config_to(dir, &format!("mllp://127.0.0.1:{port}"), max_attempts, "")
}

/// The same with any destination and more configuration after `[outbox]`.
fn config_to(dir: &std::path::Path, dest: &str, max_attempts: u32, more: &str) -> String {
    let cfg = crate::mllp::config_file(dir);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "charset = \"GB18030\"\n",
        &format!("charset = \"GB18030\"\nresult_destination = \"{dest}\"\n"),
        1,
    );
    assert!(text.contains("result_destination"));
    let text = format!(
        "{text}\n[outbox]\nretry_initial_ms = 200\nretry_max_secs = 1\nmax_attempts = {max_attempts}\nack_timeout_secs = 5\n{more}"
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The community centre uploads an ECG; dr.zx claims and signs it. Returns the signed report.
fn upload_and_sign(srv: &Server) -> String {
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let url = format!("http://{}/api/v1/ecg", srv.http);
    ureq::post(&url)
        .set("Authorization", &format!("Bearer {SQ01_TOKEN}"))
        .set("Content-Type", "application/xml")
        .send_bytes(&ecg)
        .unwrap();
    let reader = crate::support::TEST_TOKEN;
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let (st, _) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/claim"),
        reader,
        None,
    );
    assert_eq!(st, 200);
    let body = r#"{"statements":["窦性心律","急性下壁心肌梗死"],"text":"II、III、aVF 导联 ST 段抬高|建议立即转诊"}"#;
    let (st, r) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/sign"),
        reader,
        Some(body),
    );
    assert_eq!(st, 200, "{r}");
    r["report"].as_str().unwrap().to_string()
}

/// The operator view: the entries in `state`.
pub(crate) fn view(srv: &Server, state: &str) -> Vec<serde_json::Value> {
    let (st, v) = call(
        &srv.http,
        "GET",
        &format!("/api/v1/outbox?state={state}"),
        PRIVACY_TOKEN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["count"].as_u64().unwrap() as usize,
        v["entries"].as_array().unwrap().len()
    );
    v["entries"].as_array().unwrap().clone()
}

/// Polls until `f` holds (at most `secs` seconds).
pub(crate) fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn receiver_down_then_up_gets_the_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port, 50);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let report = upload_and_sign(&srv);
    let msh10 = report.strip_prefix("blake3:").unwrap()[..20].to_string();

    // Nobody listens: attempts fail with a connection error and the entry stays pending.
    wait_for(10, "a failed attempt", || {
        view(&srv, "pending")
            .first()
            .is_some_and(|e| e["attempts"].as_u64().unwrap_or(0) >= 1)
    });
    let p = &view(&srv, "pending")[0];
    assert_eq!(p["id"], report.as_str());
    assert_eq!(p["destination"], "FX-SQ01");
    assert_eq!(p["msh10"], msh10.as_str());
    assert!(
        p["last_result"].as_str().unwrap().starts_with("connect"),
        "{p}"
    );
    assert!(p.get("message").is_none(), "no message content: {p}");

    // The receiver comes up: delivered, AA recorded, exactly once.
    let rx = Receiver::start(port, "AA", "");
    wait_for(10, "delivery", || view(&srv, "delivered").len() == 1);
    std::thread::sleep(Duration::from_millis(1500));
    let got = rx.messages();
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    let m = &got[0];
    assert!(
        m.contains("|ORU^R01^ORU_R01|") && m.contains("|2.5.1|"),
        "{m}"
    );
    assert!(m.contains(&format!("|{msh10}|")), "{m}");
    assert!(m.contains("^^^FX-SQ01^PI"), "{m}");
    assert!(m.contains("急性下壁心肌梗死"), "{m}");
    assert!(
        m.contains("ST 段抬高\\F\\建议"),
        "a | in the text is escaped: {m}"
    );
    let d = &view(&srv, "delivered")[0];
    assert_eq!(d["ack_code"], "AA");
    assert_eq!(d["ack_control_id"], msh10.as_str());
    assert!(view(&srv, "pending").is_empty());

    // One audit record per view; a clinician is refused.
    let before = audit_lines(&data).len();
    view(&srv, "delivered");
    let after = audit_lines(&data);
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[before]["action"], "outbox_view");
    let (st, _) = call(
        &srv.http,
        "GET",
        "/api/v1/outbox",
        crate::support::TEST_TOKEN,
        None,
    );
    assert_eq!(st, 403);
    let (st, _) = call(
        &srv.http,
        "GET",
        "/api/v1/outbox?state=lost",
        PRIVACY_TOKEN,
        None,
    );
    assert_eq!(st, 400);
}

#[test]
fn kill9_with_an_undelivered_result_delivers_it_after_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port, 50);
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let report = upload_and_sign(&srv);
    // The answer went out: the entry is durable. Kill -9 before any delivery.
    srv.kill9();
    let log = std::fs::read_to_string(data.join("outbox.log")).unwrap();
    assert!(
        log.lines().next().unwrap().contains("\"enqueued\""),
        "{log}"
    );
    assert!(!log.contains("\"delivered\""), "{log}");

    let rx = Receiver::start(port, "AA", "");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    wait_for(10, "delivery after restart", || {
        view(&srv, "delivered").len() == 1
    });
    assert_eq!(view(&srv, "delivered")[0]["id"], report.as_str());
    // Another kill -9 and restart: nothing is sent again.
    srv.kill9();
    let srv = Server::start(&data, &["--config", &cfg]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.messages().len(), 1, "delivered once");
    assert_eq!(view(&srv, "delivered").len(), 1);
    assert!(view(&srv, "pending").is_empty());
}

#[test]
fn an_ae_is_retried_with_the_same_msh10_then_parked_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port, 3);
    let rx = Receiver::start(port, "AE", "PID-3 unknown patient");
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let report = upload_and_sign(&srv);
    wait_for(15, "parking", || view(&srv, "parked").len() == 1);
    let p = &view(&srv, "parked")[0];
    assert_eq!(p["id"], report.as_str());
    assert_eq!(p["attempts"], 3);
    assert_eq!(p["state"], "parked");
    assert_eq!(p["last_result"], "AE: PID-3 unknown patient", "{p}");
    std::thread::sleep(Duration::from_millis(1000));
    let got = rx.messages();
    assert_eq!(got.len(), 3, "three attempts, then parked");
    assert!(
        got.iter().all(|m| m == &got[0]),
        "the same bytes every time"
    );
    let msh10 = report.strip_prefix("blake3:").unwrap()[..20].to_string();
    assert!(got[0].contains(&format!("|{msh10}|")));
    assert!(view(&srv, "pending").is_empty());
    assert!(view(&srv, "delivered").is_empty());
}

/// MLLP over TLS: the receiver requires a client certificate from the dev CA; huren checks the
/// receiver's certificate against `[outbox.tls] ca` and presents its own.
#[test]
fn mllps_delivers_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (code, _, err) = crate::support::huren(&[
        "certs",
        "dev",
        "--out",
        certs.to_str().unwrap(),
        "--institution",
        "FX-ZX",
    ]);
    assert_eq!(code, 0, "{err}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(certs.join("server.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let port = free_port();
    let rx = Receiver::start_tls(port, "AA", "", Some(Arc::new(server)));
    let more = format!(
        "[outbox.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        certs.join("ca.pem"),
        certs.join("client-FX-ZX.pem"),
        certs.join("client-FX-ZX.key"),
    );
    let cfg = config_to(dir.path(), &format!("mllps://localhost:{port}"), 5, &more);
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let report = upload_and_sign(&srv);
    wait_for(10, "delivery over TLS", || {
        view(&srv, "delivered").len() == 1
    });
    let msh10 = report.strip_prefix("blake3:").unwrap()[..20].to_string();
    let got = rx.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains(&format!("|{msh10}|")));

    // mllps:// without [outbox.tls]: refused at start-up, naming the institution.
    let bad = config_to(dir.path(), &format!("mllps://localhost:{port}"), 5, "");
    let (code, _, err) = crate::support::huren(&[
        "serve",
        "--config",
        &bad,
        "--data",
        dir.path().join("data2").to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--mllp",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("FX-SQ01") && err.contains("[outbox.tls]"),
        "{err}"
    );
}
