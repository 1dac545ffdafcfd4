//! Fail closed on secrets: no national-ID secret, no serving; tokens, consent codes, national
//! IDs and names never reach the logs.

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{command, huren_env, msa, Mllp, Server, TEST_SECRET, TEST_TOKEN};

const SECRET: &str = "HUREN_NATIONAL_ID_SECRET";
const SECRET_FILE: &str = "HUREN_NATIONAL_ID_SECRET_FILE";
const NID: &str = "310120195805201229";
/// A hospital's local patient ID (medical record number).
const MRN: &str = "MRN88273615";

/// No secret in the environment at all.
const NO_SECRET: &[(&str, Option<&str>)] = &[(SECRET, None), (SECRET_FILE, None)];

/// An ORU from FX-ZX whose PID-3 carries local ID `local` and the national ID [`NID`].
fn oru_with_nid(ctl: &str, local: &str, facility: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LIS|{facility}|HUREN|REGION|20250624101500||ORU^R01^ORU_R01|{ctl}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||{local}^^^{facility}^MR~{NID}^^^NNCHN^NI||王^秀英||19580520|F|||||||||||{NID}\r\
OBR|1|ORD{ctl}|F{ctl}|CBC^血常规^L|||20250624093000|||||||||||||||20250624101000||HM|F\r\
OBX|1|NM|HGB^血红蛋白^L||131|g/L|115-150|N|||F|||20250624100000\r"
    )
    .into_bytes()
}

/// Runs `huren serve` (ephemeral ports) with `env` applied to the test environment and expects
/// it to exit by itself within 30 s; returns (exit code, stderr).
fn serve_expecting_exit(
    data: &Path,
    extra: &[&str],
    env: &[(&str, Option<&str>)],
) -> (i32, String) {
    let mut c = command();
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let mut args = vec![
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--mllp",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut child = c
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("huren serve {args:?} did not exit: it started without a usable secret");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The national-ID report count of a running server (0 when the patient is unknown).
fn nid_reports(srv: &Server) -> u64 {
    let (st, body) = srv.get(&format!("/api/v1/patients/nid:{NID}/reports"));
    assert!(st == 200 || st == 404, "{st} {body}");
    body["count"].as_u64().unwrap_or(0)
}

#[test]
fn serve_refuses_to_start_without_a_national_id_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    // The test configuration has an inline secret; this one has none.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[[institution]]\ncode = \"FX-ZX\"\nname = \"x\"\n").unwrap();
    let bare = bare.to_str().unwrap();
    let data = dir.path().join("data");
    for extra in [&[][..], &["--config", bare][..]] {
        let (code, err) = serve_expecting_exit(&data, extra, NO_SECRET);
        assert_ne!(code, 0, "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line of error: {err}");
        assert!(
            lines[0].starts_with("huren: error: no national-ID secret")
                && lines[0].contains(SECRET)
                && lines[0].contains(SECRET_FILE)
                && lines[0].contains("national_id_secret_file"),
            "{err}"
        );
        assert!(
            !data.exists(),
            "nothing is created before the secret is known"
        );
    }
    // The other commands that compute keys refuse too.
    let d = data.to_str().unwrap();
    let hl7 = dir.path().join("m.hl7");
    std::fs::write(&hl7, oru_with_nid("C1", "P1", "FX-ZX")).unwrap();
    let hl7 = hl7.to_str().unwrap();
    let (code, _, err) = huren_env(&["ingest", "--config", bare, "--data", d, hl7], NO_SECRET);
    assert_ne!(code, 0);
    assert!(err.contains("no national-ID secret"), "{err}");
    let (code, _, err) = huren_env(
        &["query", "--data", d, "--patient", &format!("nid:{NID}")],
        NO_SECRET,
    );
    assert_ne!(code, 0);
    assert!(err.contains("no national-ID secret"), "{err}");
    // With the secret the message is stored …
    let (code, _, err) = huren_env(&["ingest", "--config", &cfg, "--data", d, hl7], &[]);
    assert_eq!(code, 0, "{err}");
    // … and the commands that compute no keys work without one.
    let (code, q, err) = huren_env(
        &["query", "--data", d, "--patient", "FX-ZX:P1", "--json"],
        NO_SECRET,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(q[0]["count"], 1, "{q:?}");
    let (code, _, err) = huren_env(&["check", "--config", bare, hl7], NO_SECRET);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = huren_env(&["verify", "--data", d], NO_SECRET);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = huren_env(&["reindex", "--data", d], NO_SECRET);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn serve_takes_the_secret_from_the_environment_and_keys_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    {
        let srv = Server::start(&data, &["--config", &cfg]);
        let ack = Mllp::connect(&srv.mllp)
            .send(&oru_with_nid("E1", "P1", "FX-ZX"))
            .unwrap();
        assert_eq!(msa(&ack).0, "AA", "{ack}");
        assert_eq!(nid_reports(&srv), 1);
    }
    // Another secret, other keys: the national ID finds nothing (the environment wins over
    // the configuration's inline secret).
    let other = "another-secret-of-sufficient-length";
    let srv = Server::start_env(&data, &["--config", &cfg], &[(SECRET, Some(other))]);
    assert_eq!(nid_reports(&srv), 0);
}

#[test]
fn serve_reads_the_secret_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let secret = dir.path().join("nid-secret");
    // A trailing line end is not part of the secret.
    write_mode(&secret, &format!("{TEST_SECRET}\r\n"), 0o600);
    let from_file = [
        (SECRET, None),
        (SECRET_FILE, Some(secret.to_str().unwrap())),
    ];
    {
        let srv = Server::start_env(&data, &["--config", &cfg], &from_file);
        let ack = Mllp::connect(&srv.mllp)
            .send(&oru_with_nid("F1", "P1", "FX-ZX"))
            .unwrap();
        assert_eq!(msa(&ack).0, "AA", "{ack}");
        assert_eq!(nid_reports(&srv), 1);
    }
    // The same secret from the environment finds the same patient.
    {
        let srv = Server::start(&data, &["--config", &cfg]);
        assert_eq!(nid_reports(&srv), 1);
    }
    // And from `[identity] national_id_secret_file`, relative to the configuration file.
    let cfg2 = dir.path().join("file.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "national_id_secret = \"test-national-id-secret\"",
        "national_id_secret_file = \"nid-secret\"",
    );
    assert!(text.contains("national_id_secret_file"));
    std::fs::write(&cfg2, text).unwrap();
    let srv = Server::start_env(&data, &["--config", cfg2.to_str().unwrap()], NO_SECRET);
    assert_eq!(nid_reports(&srv), 1);
}

#[test]
fn unusable_secrets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = |name: &str, text: &str, mode: u32| {
        let p = dir.path().join(name);
        write_mode(&p, text, mode);
        p.to_str().unwrap().to_string()
    };
    let short = file("short", "fifteen-bytes!!\n", 0o600);
    let empty = file("empty", "\n", 0o600);
    let open = file("open", &format!("{TEST_SECRET}\n"), 0o644);
    let writable = file("writable", &format!("{TEST_SECRET}\n"), 0o620);
    let missing = dir.path().join("missing").to_str().unwrap().to_string();
    let inline = dir.path().join("inline.toml");
    std::fs::write(&inline, "[identity]\nnational_id_secret = \"change-me\"\n").unwrap();
    let inline = inline.to_str().unwrap();
    type Env<'a> = Vec<(&'a str, Option<&'a str>)>;
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (
            vec![],
            vec![(SECRET, Some("short-secret"))],
            "is 12 bytes; at least 16",
        ),
        (
            vec![],
            vec![(SECRET, Some(""))],
            "HUREN_NATIONAL_ID_SECRET: the national-ID secret is empty",
        ),
        (
            vec![],
            vec![(SECRET, None), (SECRET_FILE, Some(&short))],
            "is 15 bytes; at least 16",
        ),
        (
            vec![],
            vec![(SECRET, None), (SECRET_FILE, Some(&empty))],
            "secret is empty",
        ),
        (
            vec![],
            vec![(SECRET, None), (SECRET_FILE, Some(&open))],
            "has mode 644",
        ),
        (
            vec![],
            vec![(SECRET, None), (SECRET_FILE, Some(&writable))],
            "has mode 620",
        ),
        (
            vec![],
            vec![(SECRET, None), (SECRET_FILE, Some(&missing))],
            "cannot read",
        ),
        (
            vec!["--config", inline],
            NO_SECRET.to_vec(),
            "[identity] national_id_secret: the national-ID secret is 9 bytes",
        ),
        // A bad secret is refused under --demo too: it is not silently replaced.
        (
            vec!["--demo"],
            vec![(SECRET, Some("short-secret"))],
            "at least 16",
        ),
    ];
    for (extra, env, want) in cases {
        let (code, err) = serve_expecting_exit(&data, &extra, &env);
        assert_ne!(code, 0, "{env:?}: {err}");
        assert!(err.contains(want), "{env:?}: want {want:?} in {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            !err.contains(TEST_SECRET),
            "the secret itself is never printed: {err}"
        );
    }
}

#[test]
fn demo_without_a_secret_keeps_its_own_per_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let path = data.join("demo-national-id-secret");
    let first = {
        let srv = Server::start_env(&data, &["--demo"], NO_SECRET);
        assert!(
            nid_reports(&srv) > 0,
            "the demo patient is found by national ID"
        );
        let meta = std::fs::metadata(&path).expect("the demo secret is kept in the data dir");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::read_to_string(&path).unwrap()
    };
    assert!(first.trim_end().len() >= 16, "{first:?}");
    let srv = Server::start_env(&data, &["--demo"], NO_SECRET);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        first,
        "reused on restart"
    );
    assert!(nid_reports(&srv) > 0);
    // Another demo store gets another secret.
    drop(srv);
    let other = dir.path().join("demo2");
    let _srv = Server::start_env(&other, &["--demo"], NO_SECRET);
    assert_ne!(
        std::fs::read_to_string(other.join("demo-national-id-secret")).unwrap(),
        first
    );
}

/// Everything the server wrote at the most verbose log level contains no token, consent code,
/// national ID, patient name or secret.
#[test]
fn tokens_consent_codes_national_ids_and_names_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let wrong_token = "wrong-token-7d1e0c5b9a";
    let child = command()
        .env("HUREN_LOG", "trace")
        .env("RUST_LOG", "trace")
        .args([
            "serve",
            "--config",
            &cfg,
            "--data",
            data.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
        ])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Kill(child);
    let (mut http, mut mllp) = (String::new(), String::new());
    let started = Instant::now();
    while (http.is_empty() || mllp.is_empty()) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        let f = std::fs::File::open(&out_path).unwrap();
        for l in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) else {
                continue;
            };
            match v["listening"].as_str() {
                Some("http") => http = v["addr"].as_str().unwrap().to_string(),
                Some("mllp") => mllp = v["addr"].as_str().unwrap().to_string(),
                _ => {}
            }
        }
    }
    assert!(!http.is_empty() && !mllp.is_empty(), "server did not start");
    // A consent recorded by the registrar: its code must never be logged either.
    let issued: serde_json::Value = serde_json::from_reader(
        ureq::post(&format!("http://{http}/api/v1/consents"))
            .set("Authorization", "Bearer test-registrar-token")
            .set("Content-Type", "application/json")
            .send_string(
                &serde_json::json!({"patient": format!("nid:{NID}"),
                    "credential": {"kind": "health_card", "value": "SECRETCARD123"}})
                .to_string(),
            )
            .unwrap()
            .into_reader(),
    )
    .unwrap();
    let code = issued["code"].as_str().unwrap().to_string();
    let code = code.as_str();

    // HL7 over MLLP: accepted, duplicate, and refused (unknown sender) messages with the
    // national ID in PID-3 and PID-19 and the patient's name in PID-5.
    let mut c = Mllp::connect(&mllp);
    let ack = c.send(&oru_with_nid("L1", MRN, "FX-ZX")).unwrap();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let ack = c.send(&oru_with_nid("L1", MRN, "FX-ZX")).unwrap();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let ack = c.send(&oru_with_nid("L2", "P2", "NOBODY")).unwrap();
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    drop(c);

    // HTTP: the right token with a consent code, a wrong token, national IDs in paths and
    // query strings, a refused query, the web sign-in and a national-ID search.
    let bearer = format!("Bearer {TEST_TOKEN}");
    let consent = format!("health_card {code}");
    let wrong = format!("Bearer {wrong_token}");
    let get = |path: &str, auth: &str| {
        let req = ureq::get(&format!("http://{http}{path}"))
            .timeout(Duration::from_secs(10))
            .set("Authorization", auth)
            .set("X-Patient-Authorization", &consent);
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("GET {path}: {e}"),
        }
    };
    let paths = [
        format!("/api/v1/patients/nid:{NID}/reports"),
        format!("/api/v1/patients/nid:{NID}/results"),
        format!("/api/v1/patients/nid:{NID}/reports?kind=bogus"),
        format!("/api/v1/patients/nid:{NID}x/reports"),
        format!("/fhir/Observation?patient=nid:{NID}"),
        format!("/fhir/DiagnosticReport?patient=nid:{NID}"),
        format!("/api/v1/audit?patient=nid:{NID}"),
        format!("/ui/search?national_id={NID}"),
    ];
    let mut statuses = Vec::new();
    for p in &paths {
        statuses.push(get(p, &bearer));
        statuses.push(get(p, &wrong));
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(statuses[1], 401, "{statuses:?}");
    for form in [
        format!("token={TEST_TOKEN}"),
        format!("token={wrong_token}"),
        format!("by=national_id&national_id={NID}&code={code}"),
    ] {
        for path in ["/ui/login", "/ui/search"] {
            let r = ureq::post(&format!("http://{http}{path}"))
                .timeout(Duration::from_secs(10))
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(&form);
            if let Err(ureq::Error::Transport(e)) = r {
                panic!("POST {path}: {e}");
            }
        }
    }
    let body = serde_json::json!({"patient": format!("nid:{NID}"), "item": "FX-LAB-HGB"});
    for auth in [&bearer, &wrong] {
        let _ = ureq::post(&format!("http://{http}/api/v1/recognition/check"))
            .timeout(Duration::from_secs(10))
            .set("Authorization", auth)
            .set("X-Patient-Authorization", &consent)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(server);

    let logs = std::fs::read_to_string(&err_path).unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    // The level is really verbose: our own debug lines and the libraries' traces are there.
    assert!(logs.contains("mllp message handled"), "{logs}");
    assert!(logs.contains("TRACE"), "not at trace level");
    for (what, needle) in [
        ("clinician token", TEST_TOKEN),
        ("wrong token", wrong_token),
        ("consent code", code),
        ("consent code without its dash", &code.replace('-', "")),
        ("presented credential", "SECRETCARD123"),
        ("national ID", NID),
        ("local patient ID", MRN),
        ("patient name", "王^秀英"),
        ("patient name", "秀英"),
        ("national-ID secret", TEST_SECRET),
    ] {
        // Also as bytes, as `{:?}` of a byte slice writes them (`[51, 49, 48, …]`).
        let bytes = format!("{:?}", needle.as_bytes());
        let bytes = &bytes[1..bytes.len() - 1];
        for (stream, text) in [("stderr", &logs), ("stdout", &stdout)] {
            if let Some(at) = text.find(needle).or_else(|| text.find(bytes)) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!(
                    "the {what} is in the server's {stream}: {}",
                    &text[from..to]
                );
            }
        }
    }
}
