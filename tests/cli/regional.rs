//! Issue 20, the regional platform: every final and corrected report reaches a platform over
//! HTTPS with a client certificate and a bearer token, from the durable outbox, as a WS/T 500
//! document valid against the CDA R2 schema. A platform that is down gets each document once
//! it is up, in commit order, exactly once, also across a restart and a `kill -9` of huren
//! right after an acknowledgement; each attempt is audited; failures are visible.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::alerts::until;
use crate::outbox::free_port;
use crate::support::{huren, msa, oru, repo, Mllp, ReadyChild, Server};
use crate::worklist::call;

const TOKEN: &str = "platform-token-0123456789";

/// The python receiver (`tests/cli/regional_receiver.py`, the standard library only).
pub(crate) fn receiver(port: u16, certs: &Path, dir: &Path, fail_first: u32) -> ReadyChild {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/cli/regional_receiver.py"))
        .arg(port.to_string())
        .arg(certs)
        .arg(TOKEN)
        .arg(dir)
        .arg(fail_first.to_string())
        .arg("120");
    ReadyChild::spawn(cmd, "the regional receiver (python3)")
}

pub(crate) fn got(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("got.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn regional_outbox(srv: &Server) -> Vec<serde_json::Value> {
    let (st, v) = call(
        &srv.http,
        "GET",
        "/api/v1/outbox?channel=regional",
        "test-privacy-token",
        None,
    );
    assert_eq!(st, 200, "{v}");
    v["entries"].as_array().unwrap().clone()
}

pub(crate) fn config(dir: &Path, port: u16, certs: &Path) -> String {
    let cfg = crate::mllp::config_file(dir);
    let token = dir.join("regional.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        r#"
[outbox]
retry_initial_ms = 200
retry_max_secs = 1
max_attempts = 1000
ack_timeout_secs = 5

[regional]
url = "https://localhost:{port}/wst500/documents"
national_id = true
token_file = "regional.token"
from = "start"

[regional.tls]
ca = "{c}/ca.pem"
cert = "{c}/client-FX-YLT.pem"
key = "{c}/client-FX-YLT.key"
"#,
        c = certs.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

pub(crate) fn send(srv: &Server, msg: &[u8]) {
    let ack = Mllp::connect(&srv.mllp).send(msg).expect("an ACK");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
}

/// A development CA with a client certificate for FX-YLT, in `dir/certs`.
pub(crate) fn dev_certs(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    let (rc, _, err) = huren(&[
        "certs",
        "dev",
        "--out",
        certs.to_str().unwrap(),
        "--institution",
        "FX-YLT",
    ]);
    assert_eq!(rc, 0, "{err}");
    certs
}

fn schema() -> Option<PathBuf> {
    crate::cda::schema()
}

#[test]
fn documents_reach_a_platform_that_was_down_each_once_valid_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(dir.path());
    let port = free_port();
    let cfg = config(dir.path(), port, &certs);
    let data = dir.path().join("data");
    let got_dir = dir.path().join("platform");
    std::fs::create_dir_all(&got_dir).unwrap();
    let mut srv = Server::start(&data, &["--config", &cfg]);

    // The platform is down: the lab message's two reports (one per OBR) and the correction
    // of one of them wait, retried, in commit order; a preliminary report does not go.
    let lab = std::fs::read(repo().join("fixtures/hl7/oru_multi_obr_cn_utf8.hl7")).unwrap();
    let corrected = std::fs::read(repo().join("fixtures/hl7/oru_corrected.hl7")).unwrap();
    send(&srv, &lab);
    send(&srv, &corrected);
    send(
        &srv,
        &oru("FX-ZX", "PRELIM-1", "P-PRE", "F-PRE", "120", "P"),
    );
    until("failed attempts", Duration::from_secs(20), || {
        let o = regional_outbox(&srv);
        o.len() == 3 && o[0]["attempts"].as_u64().unwrap() >= 2
    });
    let o = regional_outbox(&srv);
    assert!(o.iter().all(|e| e["state"] == "pending"), "{o:?}");
    assert_eq!(o[1]["attempts"], 0, "the later ones wait behind: {o:?}");
    assert_eq!(o[2]["attempts"], 0, "{o:?}");
    assert!(
        o[0]["last_result"].as_str().unwrap().starts_with("connect"),
        "{o:?}"
    );
    assert!(o.iter().all(|e| e.get("message").is_none()), "{o:?}");
    let ids: Vec<String> = o
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let hex = |h: &str| h.strip_prefix("blake3:").unwrap().to_string();
    assert!(
        o.iter().zip(&ids).all(|(e, id)| e["msh10"] == hex(id)),
        "{o:?}"
    );

    // Up, but busy once (503): then all arrive, in order, each once.
    let rx = receiver(port, &certs, &got_dir, 1);
    until("delivered", Duration::from_secs(30), || {
        regional_outbox(&srv)
            .iter()
            .all(|e| e["state"] == "delivered")
    });
    let lines = got(&got_dir);
    let kept: Vec<&serde_json::Value> = lines.iter().filter(|l| l["new"] == true).collect();
    assert_eq!(
        kept.iter()
            .map(|l| l["key"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "{lines:?}"
    );
    assert_eq!(lines[0]["status"], 503, "{lines:?}");
    for l in &kept {
        assert_eq!(l["content_type"], "application/xml; charset=utf-8");
        assert_eq!(l["client_cn"], "FX-YLT", "the client certificate: {l}");
    }
    let o = regional_outbox(&srv);
    assert!(o.iter().all(|e| e["ack_code"] == "201"), "{o:?}");

    // The documents: C0007 with the national ID (national_id = true; the message carried
    // it); the correction, last, replaces one of the first two; each valid against the CDA
    // R2 schema and the template rules.
    let docs: Vec<String> = ids
        .iter()
        .map(|h| std::fs::read_to_string(got_dir.join(format!("{}.xml", hex(h)))).unwrap())
        .collect();
    for d in &docs {
        assert!(d.contains("<code code=\"C0007\""), "{d}");
        assert!(
            d.contains("<id root=\"2.16.156.10011.1.3\" extension=\"310120199001011234\"/>"),
            "{d}"
        );
    }
    assert!(!docs[0].contains("RPLC") && !docs[1].contains("RPLC"));
    let rplc = docs[2]
        .split_once("<relatedDocument typeCode=\"RPLC\">")
        .expect("RPLC")
        .1;
    assert!(
        ids[..2]
            .iter()
            .any(|h| rplc.contains(&format!("extension=\"{}\"", hex(h)))),
        "{rplc}"
    );
    for (n, doc) in docs.iter().enumerate() {
        let file = dir.path().join(format!("doc{n}.xml"));
        std::fs::write(&file, doc).unwrap();
        let (rc, lines, err) = huren(&["check", file.to_str().unwrap()]);
        assert_eq!(rc, 0, "doc {n}: {lines:?} {err}");
        if let Some(xsd) = schema() {
            let out = Command::new("xmllint")
                .arg("--noout")
                .arg("--schema")
                .arg(&xsd)
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "doc {n} not CDA R2 valid: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Each attempt is audited before it is sent: the report and the person key, never the
    // national ID in clear.
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let pushes: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "regional_push")
        .collect();
    assert!(pushes.len() >= 4, "{pushes:?}");
    assert!(
        pushes.iter().all(|r| r["patient"].is_string()),
        "{pushes:?}"
    );
    assert!(!audit.contains("310120199001011234"));

    // A restart sends nothing again; a kill -9 right after an acknowledgement loses nothing.
    drop(srv);
    srv = Server::start(&data, &["--config", &cfg]);
    let third = oru("FX-ZX", "CTL-3", "P-3", "F-3", "130", "F");
    send(&srv, &third);
    srv.kill9();
    let srv = Server::start(&data, &["--config", &cfg]);
    until("the third delivered", Duration::from_secs(30), || {
        let o = regional_outbox(&srv);
        o.len() == 4 && o.iter().all(|e| e["state"] == "delivered")
    });
    std::thread::sleep(Duration::from_secs(1));
    let lines = got(&got_dir);
    let kept: Vec<&str> = lines
        .iter()
        .filter(|l| l["new"] == true)
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 4, "{lines:?}");
    let repeats = lines.iter().filter(|l| l["status"] == 200).count();
    assert_eq!(repeats, 0, "nothing sent twice: {lines:?}");
    drop(rx);
}

/// A `[regional]` the server cannot use stops `serve` at start, naming the problem and never
/// the token.
#[test]
fn a_bad_regional_section_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let base = std::fs::read_to_string(&cfg).unwrap();
    let data = dir.path().join("data");
    let token = dir.path().join("open.token");
    std::fs::write(&token, TOKEN).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for (section, want) in [
        (
            "[regional]\nurl = \"http://platform.example/x\"\n",
            "use https://",
        ),
        (
            "[regional]\nurl = \"https://platform.example/x\"\ninstitutions = [\"NOPE\"]\n",
            "\"NOPE\" is not an [[institution]]",
        ),
        (
            "[regional]\nurl = \"https://platform.example/x\"\ntoken_file = \"open.token\"\n",
            "must not be readable by others",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}\n{section}")).unwrap();
        let (rc, _, err) = huren(&[
            "serve",
            "--config",
            &cfg,
            "--data",
            data.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
        ]);
        assert_ne!(rc, 0, "{section}");
        assert!(err.contains(want), "{section}: {err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
}
