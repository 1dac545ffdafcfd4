//! Helpers: run the binary, start a server, talk MLLP and HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_huren"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The national-ID secret every test run of the binary gets (`HUREN_NATIONAL_ID_SECRET`),
/// unless a test overrides the environment: without one, commands that compute national-ID
/// keys refuse to run.
pub const TEST_SECRET: &str = "huren-cli-test-national-id-secret";

/// `huren` with the test environment: [`TEST_SECRET`], and no secret file variable inherited.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env("HUREN_NATIONAL_ID_SECRET", TEST_SECRET)
        .env_remove("HUREN_NATIONAL_ID_SECRET_FILE");
    c
}

/// Runs `huren ARGS`, returns (exit code, stdout JSON lines, stderr).
pub fn huren(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    huren_env(args, &[])
}

/// [`huren`] with environment changes: `(name, Some(value))` sets, `(name, None)` removes.
pub fn huren_env(
    args: &[&str],
    env: &[(&str, Option<&str>)],
) -> (i32, Vec<serde_json::Value>, String) {
    let mut c = command();
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.args(args).output().expect("run huren");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A running `huren serve` that is killed when dropped.
pub struct Server {
    pub child: Child,
    pub http: String,
    pub mllp: String,
    pub lines: Vec<serde_json::Value>,
    /// Clinician token used by [`Server::get`]: the demo token, else the test configuration's.
    pub token: String,
    /// Registrar token that records consents for [`Server::authorization`].
    pub registrar: String,
    /// Consents recorded so far: patient → `X-Patient-Authorization` value; and the last one used.
    consents: std::cell::RefCell<(std::collections::HashMap<String, String>, Option<String>)>,
}

/// The clinician token of the test configuration (`tests/cli/mllp.rs`).
pub const TEST_TOKEN: &str = "test-clinician-token";
/// The registrar token of the test configuration.
pub const TEST_REGISTRAR: &str = "test-registrar-token";

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_env(data, extra, &[])
    }

    /// [`Server::start`] with environment changes: `(name, Some(value))` sets, `(name, None)`
    /// removes.
    pub fn start_env(data: &Path, extra: &[&str], env: &[(&str, Option<&str>)]) -> Server {
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
        let mut c = command();
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let mut child = c
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn huren serve");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let (mut http, mut mllp) = (String::new(), String::new());
        let mut lines = Vec::new();
        let demo = extra.contains(&"--demo");
        for _ in 0..10 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            match v["listening"].as_str() {
                Some("http") | Some("https") => http = v["addr"].as_str().unwrap().to_string(),
                Some("mllp") => mllp = v["addr"].as_str().unwrap().to_string(),
                _ => {}
            }
            let tokens = v.get("demo_token").is_some();
            lines.push(v);
            // A demo prints its tokens last (after its listeners, DICOM included).
            if !http.is_empty() && !mllp.is_empty() && (!demo || tokens) {
                break;
            }
        }
        assert!(
            !http.is_empty() && !mllp.is_empty(),
            "server did not announce listeners: {lines:?}"
        );
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = reader.read_to_string(&mut sink);
        });
        let token = lines
            .iter()
            .find_map(|l| l["demo_token"].as_str())
            .unwrap_or(TEST_TOKEN)
            .to_string();
        let registrar = lines
            .iter()
            .find_map(|l| l["registrar_token"].as_str())
            .unwrap_or(TEST_REGISTRAR)
            .to_string();
        Server {
            child,
            http,
            mllp,
            lines,
            token,
            registrar,
            consents: Default::default(),
        }
    }

    /// A server started by other means (its stdout already read), with the test tokens.
    pub fn from_parts(
        child: Child,
        http: String,
        mllp: String,
        lines: Vec<serde_json::Value>,
    ) -> Server {
        Server {
            child,
            http,
            mllp,
            lines,
            token: TEST_TOKEN.to_string(),
            registrar: TEST_REGISTRAR.to_string(),
            consents: Default::default(),
        }
    }

    /// The `X-Patient-Authorization` value of a consent for `patient`, recorded (once) through
    /// `POST /api/v1/consents` as the registrar.
    pub fn authorization(&self, patient: &str) -> String {
        if let Some(v) = self.consents.borrow().0.get(patient) {
            return v.clone();
        }
        let (st, body) = self.post(
            "/api/v1/consents",
            &[("Authorization", &format!("Bearer {}", self.registrar))],
            &serde_json::json!({"patient": patient,
                "credential": {"kind": "health_card", "value": "test card"}}),
        );
        assert_eq!(st, 201, "recording a consent for {patient}: {body}");
        let v = body["authorization"]
            .as_str()
            .expect("authorization")
            .to_string();
        self.consents
            .borrow_mut()
            .0
            .insert(patient.to_string(), v.clone());
        v
    }

    /// The patient a path names (`/api/v1/patients/{id}/…`, `?patient=`), if one.
    fn patient_of(path: &str) -> Option<String> {
        if let Some(rest) = path.strip_prefix("/api/v1/patients/") {
            return rest.split(['/', '?']).next().map(str::to_string);
        }
        let q = path.split_once('?')?.1;
        q.split('&')
            .find_map(|kv| kv.strip_prefix("patient="))
            .map(percent_decode)
    }

    /// POST JSON with these headers.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("http://{}{}", self.http, path);
        match self.try_post(path, headers, body) {
            Ok(answer) => answer,
            Err(e) => panic!("POST {url}: {e}"),
        }
    }

    /// [`Server::post`], with a transport failure as `Err` instead of a panic: a body the
    /// server refuses by its length (413) may be cut off while it is still being sent, and
    /// the client then sees the closed connection rather than the answer.
    pub fn try_post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), String> {
        let url = format!("http://{}{}", self.http, path);
        let mut req = ureq::post(&url)
            .timeout(Duration::from_secs(10))
            .set("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_string(&body.to_string()) {
            Ok(r) => {
                let s = r.status();
                Ok((s, json_body(r)))
            }
            Err(ureq::Error::Status(s, r)) => Ok((s, json_body(r))),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }

    /// GET as the clinician, with the patient's authorisation: a consent recorded for the
    /// patient the path names, else for the patient of the last such GET (a report read by
    /// hash after that patient's results).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        let consent = match Self::patient_of(path) {
            Some(p) if p.contains(':') => {
                let v = self.authorization(&p);
                self.consents.borrow_mut().1 = Some(v.clone());
                Some(v)
            }
            _ => self.consents.borrow().1.clone(),
        };
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(c) = &consent {
            headers.push(("X-Patient-Authorization", c.as_str()));
        }
        self.get_with(path, &headers)
    }

    /// GET with exactly these headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let url = format!("http://{}{}", self.http, path);
        let mut req = ureq::get(&url).timeout(Duration::from_secs(10));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.call() {
            Ok(r) => {
                let s = r.status();
                (s, json_body(r))
            }
            Err(ureq::Error::Status(s, r)) => (s, json_body(r)),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }
}

/// `%XX` decoding of a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An MLLP client connection.
pub struct Mllp {
    s: TcpStream,
}

impl Mllp {
    pub fn connect(addr: &str) -> Mllp {
        let s = TcpStream::connect(addr).expect("connect mllp");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Mllp { s }
    }

    /// Sends one message and returns the ACK text (None if the connection closed).
    pub fn send(&mut self, msg: &[u8]) -> Option<String> {
        let mut frame = vec![0x0b];
        frame.extend_from_slice(msg);
        frame.extend_from_slice(&[0x1c, 0x0d]);
        self.send_raw(&frame)
    }

    /// Writes `bytes` as they are (framing included) and returns the next ACK's text.
    pub fn send_raw(&mut self, frame: &[u8]) -> Option<String> {
        self.s.write_all(frame).ok()?;
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.s.read(&mut byte) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    buf.push(byte[0]);
                    if buf.ends_with(&[0x1c, 0x0d]) {
                        break;
                    }
                }
            }
        }
        let start = buf.iter().position(|b| *b == 0x0b)? + 1;
        Some(String::from_utf8_lossy(&buf[start..buf.len() - 2]).to_string())
    }
}

/// MSA-1 and MSA-2 of an ACK.
pub fn msa(ack: &str) -> (String, String) {
    let seg = ack
        .split(['\r', '\n'])
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    let f: Vec<&str> = seg.split('|').collect();
    (
        f.get(1).unwrap_or(&"").to_string(),
        f.get(2).unwrap_or(&"").to_string(),
    )
}

/// A Chinese ORU^R01 from `facility` with control ID `ctl`, patient `pid`, filler order `filler`.
pub fn oru(
    facility: &str,
    ctl: &str,
    pid: &str,
    filler: &str,
    value: &str,
    status: &str,
) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LIS|{facility}|HUREN|REGION|20250624101500||ORU^R01^ORU_R01|{ctl}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||{pid}^^^{facility}^MR||王^芳||19800101|F\r\
OBR|1|ORD{filler}|{filler}|CBC^血常规^L|||20250624093000|||||||||||||||20250624101000||HM|{status}\r\
OBX|1|NM|HGB^血红蛋白^L||{value}|g/L|115-150|N|||{status}|||20250624100000\r\
OBX|2|NM|K^钾^L||2.6|mmol/L|3.5-5.3|LL|||{status}|||20250624100000\r"
    )
    .into_bytes()
}

/// The third-party corpus root, or None (and a failure under CI) when it is absent.
pub fn third_party() -> Option<PathBuf> {
    match std::env::var_os("HUREN_THIRD_PARTY") {
        Some(p) if Path::new(&p).is_dir() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "HUREN_THIRD_PARTY is not set or not a directory, and CI=true: the corpus is required"
            );
            eprintln!("skipping: HUREN_THIRD_PARTY not set");
            None
        }
    }
}

fn json_body(r: ureq::Response) -> serde_json::Value {
    r.into_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A test peer script (a python receiver) that prints `ready` once it listens; killed when
/// dropped.
pub struct ReadyChild(Child);

impl ReadyChild {
    /// Spawns `cmd` with its stdout piped and waits for its `ready` line.
    pub fn spawn(mut cmd: Command, what: &str) -> ReadyChild {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let mut out = child.stdout.take().expect("stdout");
        let mut b = [0u8; 6];
        out.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("{what} ready: {e}"));
        assert_eq!(&b, b"ready\n", "{what}");
        ReadyChild(child)
    }
}

impl Drop for ReadyChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
