//! Issue 18, door times from the HIS: ADT A01 from the sending hospital stamps the STEMI case's
//! door-in, A03 its door-out, A01 from the PCI hospital (the person linked by the national ID
//! in PID-3) its arrival — each durable before the AA. Traffic for a patient without a case is
//! AA and stores nothing; a malformed ADT is AE with an ERR naming the field; a stamp the case
//! refuses (out of order, another time) is AA with MSA-3 saying why; an identical re-send
//! changes nothing. Real sockets, and python-hl7's `mllp_send` as a peer.

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alerts::{config, until, upload_stemi};
use crate::support::{msa, Mllp, Server};
use crate::worklist::call;

const SQ01: &str = "test-sq01-token";
/// A national ID (居民身份证号) both hospitals send in PID-3.
const NID: &str = "310120196503070011";

/// HL7 TS with its offset, in Shanghai time.
fn ts(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y%m%d%H%M%S%z")
        .to_string()
}

/// An ADT from `app`/`facility`: PID-3 `pid3`, PV1-44 / PV1-45 as given, EVN-2 now.
fn adt(
    app: &str,
    facility: &str,
    event: &str,
    ctl: &str,
    pid3: &str,
    t44: &str,
    t45: &str,
) -> Vec<u8> {
    let mut pv1 = vec![""; 46];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "E";
    pv1[19] = "V-1";
    pv1[44] = t44;
    pv1[45] = t45;
    format!(
        "MSH|^~\\&|{app}|{facility}|HUREN|REGION|{now}||ADT^{event}^ADT_A01|{ctl}|P|2.5.1\r\
EVN|{event}|{now}\r\
PID|1||{pid3}||ZHANG^WEI||19650307|M\r\
{}\r",
        pv1.join("|"),
        now = ts(Utc::now()),
    )
    .into_bytes()
}

fn case(srv: &Server) -> serde_json::Value {
    let (st, v) = call(&srv.http, "GET", "/api/v1/referrals", SQ01, None);
    assert_eq!(st, 200, "{v}");
    v["referrals"][0].clone()
}

fn at(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("no time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// MSA-3, if any.
fn msa3(ack: &str) -> Option<String> {
    let seg = ack.split('\r').find(|s| s.starts_with("MSA|"))?;
    seg.split('|').nth(3).map(str::to_string)
}

fn log_lines(data: &std::path::Path) -> usize {
    std::fs::read_to_string(data.join("cases.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Sends `msg` with python-hl7's `mllp_send`; its stdout (the ACK), or None when the tool is
/// missing outside CI.
fn mllp_send(srv: &Server, dir: &std::path::Path, msg: &[u8]) -> Option<String> {
    if Command::new("mllp_send").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mllp_send (pip install hl7) is required under CI"
        );
        eprintln!("mllp_send not installed: sending with the test's own client");
        return None;
    }
    let file = dir.join("adt.hl7");
    std::fs::write(&file, msg).unwrap();
    let port = srv.mllp.rsplit(':').next().unwrap();
    let out = Command::new("mllp_send")
        .args([
            "--port",
            port,
            "--file",
            file.to_str().unwrap(),
            "--loose",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).replace('\n', "\r"))
}

#[test]
fn adt_a01_a03_stamp_door_in_door_out_and_arrival_durably_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    upload_stemi(&srv);
    // The case and its machine stamps (the last: the alert raised), so the log stands still.
    until("the case", Duration::from_secs(10), || {
        case(&srv)["stamps"]["alert_raised"]["at"].is_string()
    });
    let c = case(&srv);
    assert_eq!(c["patient"], "FX-SQ01:0012345", "{c}");
    assert!(c["stamps"]["door_in"].is_null());
    let mut mllp = Mllp::connect(&srv.mllp);
    let lines = log_lines(&data);
    assert!(lines > 0);

    // An admission of someone without a case: ordinary traffic, AA, nothing stored.
    let ack = mllp
        .send(&adt(
            "LIS",
            "FX-SQ01",
            "A01",
            "U-1",
            "P-OTHER^^^FX-SQ01^MR",
            &ts(Utc::now()),
            "",
        ))
        .unwrap();
    assert_eq!(msa(&ack), ("AA".into(), "U-1".into()), "{ack}");
    assert_eq!(msa3(&ack), None, "{ack}");
    assert_eq!(log_lines(&data), lines);

    // Malformed: no PID-3, an unreadable PV1-44, a date without time — AE naming the field.
    let now = Utc::now();
    for (ctl, pid3, t44, err) in [
        ("M-1", "", ts(now), "PID^1^3"),
        (
            "M-2",
            "0012345^^^FX-SQ01^MR",
            "2026-01-01 08:00".to_string(),
            "PV1^1^44",
        ),
        (
            "M-3",
            "0012345^^^FX-SQ01^MR",
            "20260101".to_string(),
            "PV1^1^44",
        ),
    ] {
        let ack = mllp
            .send(&adt("LIS", "FX-SQ01", "A01", ctl, pid3, &t44, ""))
            .unwrap();
        assert_eq!(msa(&ack), ("AE".into(), ctl.into()), "{ack}");
        let e = ack
            .split('\r')
            .find(|s| s.starts_with("ERR|"))
            .unwrap_or_else(|| panic!("{ack}"));
        assert!(e.starts_with(&format!("ERR||{err}|")), "{ack}");
    }
    assert_eq!(log_lines(&data), lines);
    assert!(case(&srv)["stamps"]["door_in"].is_null());

    // Door-in from the sending hospital's A01 (PV1-44, its offset), the national ID linking
    // the person.
    let door_in = now - chrono::Duration::minutes(40);
    let pid3 = format!("0012345^^^FX-SQ01^MR~{NID}^^^NNCHN^NI");
    // An old admission sent again (three days before the case): AA, not stamped, MSA-3 says so.
    let old = adt(
        "LIS",
        "FX-SQ01",
        "A01",
        "OLD-1",
        &pid3,
        &ts(now - chrono::Duration::days(3)),
        "",
    );
    let ack = mllp.send(&old).unwrap();
    assert_eq!(msa(&ack), ("AA".into(), "OLD-1".into()), "{ack}");
    assert_eq!(
        msa3(&ack).as_deref(),
        Some("door_in not stamped: more than 24 h before the case"),
        "{ack}"
    );
    assert_eq!(log_lines(&data), lines);
    assert!(case(&srv)["stamps"]["door_in"].is_null());
    let a01 = adt("LIS", "FX-SQ01", "A01", "IN-1", &pid3, &ts(door_in), "");
    let ack = mllp.send(&a01).unwrap();
    assert_eq!(msa(&ack), ("AA".into(), "IN-1".into()), "{ack}");
    assert_eq!(msa3(&ack), None, "{ack}");
    let c = case(&srv);
    let s = &c["stamps"]["door_in"];
    assert_eq!(s["source"], "adt", "{c}");
    assert_eq!(s["by"], "adt:FX-SQ01", "{c}");
    assert_eq!(at(&s["at"]).timestamp(), door_in.timestamp(), "{c}");
    assert_eq!(log_lines(&data), lines + 1, "durable before the AA");
    // The same message again: AA, nothing new.
    let ack = mllp.send(&a01).unwrap();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(msa3(&ack), None, "{ack}");
    assert_eq!(log_lines(&data), lines + 1);
    // Another door-in time: not the sender's error — AA, and MSA-3 says why.
    let ack = mllp
        .send(&adt(
            "LIS",
            "FX-SQ01",
            "A01",
            "IN-2",
            &pid3,
            &ts(door_in + chrono::Duration::minutes(3)),
            "",
        ))
        .unwrap();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(
        msa3(&ack).as_deref(),
        Some("door_in not stamped: it has another time"),
        "{ack}"
    );

    // A03 before the door-in: out of order, AA with the reason, nothing stamped.
    let early = door_in - chrono::Duration::minutes(10);
    let ack = mllp
        .send(&adt(
            "LIS",
            "FX-SQ01",
            "A03",
            "OUT-0",
            "0012345^^^FX-SQ01^MR",
            "",
            &ts(early),
        ))
        .unwrap();
    assert_eq!(msa(&ack), ("AA".into(), "OUT-0".into()), "{ack}");
    assert_eq!(
        msa3(&ack).as_deref(),
        Some("door_out not stamped: door_out would precede door_in"),
        "{ack}"
    );
    assert!(case(&srv)["stamps"]["door_out"].is_null());
    assert_eq!(log_lines(&data), lines + 1);

    // Door-out from A03's PV1-45, sent by a real peer (python-hl7's mllp_send).
    let door_out = now - chrono::Duration::minutes(15);
    let a03 = adt(
        "LIS",
        "FX-SQ01",
        "A03",
        "OUT-1",
        "0012345^^^FX-SQ01^MR",
        "",
        &ts(door_out),
    );
    let ack = match mllp_send(&srv, dir.path(), &a03) {
        Some(out) => out,
        None => mllp.send(&a03).unwrap(),
    };
    assert!(ack.contains("MSA|AA|OUT-1"), "{ack:?}");
    let c = case(&srv);
    assert_eq!(c["stamps"]["door_out"]["source"], "adt", "{c}");
    assert_eq!(
        at(&c["stamps"]["door_out"]["at"]).timestamp(),
        door_out.timestamp()
    );
    assert_eq!(c["intervals"]["door_in_door_out"], 25 * 60, "{c}");

    // Arrival: A01 from the PCI hospital, its own patient ID and the same national ID.
    let arrival = now - chrono::Duration::minutes(2);
    let ack = mllp
        .send(&adt(
            "HIS",
            "FX-ZX",
            "A01",
            "ZX-1",
            &format!("Z-777^^^FX-ZX^MR~{NID}^^^NNCHN^NI"),
            &ts(arrival),
            "",
        ))
        .unwrap();
    assert_eq!(msa(&ack), ("AA".into(), "ZX-1".into()), "{ack}");
    assert_eq!(msa3(&ack), None, "{ack}");
    let c = case(&srv);
    assert_eq!(c["stamps"]["arrival"]["source"], "adt", "{c}");
    assert_eq!(c["stamps"]["arrival"]["by"], "adt:FX-ZX", "{c}");
    assert_eq!(
        at(&c["stamps"]["arrival"]["at"]).timestamp(),
        arrival.timestamp()
    );
    assert_eq!(log_lines(&data), lines + 3);

    // The PCI hospital's discharge is no door-out of this case: AA, nothing stored.
    let ack = mllp
        .send(&adt(
            "HIS",
            "FX-ZX",
            "A03",
            "ZX-2",
            "Z-777^^^FX-ZX^MR",
            "",
            &ts(Utc::now()),
        ))
        .unwrap();
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(log_lines(&data), lines + 3);

    // A restart replays the stamps.
    drop(mllp);
    drop(srv);
    let srv = Server::start(&data, &["--config", &cfg]);
    let c = case(&srv);
    for m in ["door_in", "door_out", "arrival"] {
        assert_eq!(c["stamps"][m]["source"], "adt", "{m}: {c}");
    }
}
