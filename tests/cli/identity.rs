//! Issue 16, finding 1: a national ID claimed for a local ID that is already linked to
//! another one never moves results — not the other institutions', not that local ID's. The
//! message is stored (AA) and its reports are filed identity-uncertain; an identity review
//! item waits for the privacy officer, whose explicit decision (audited) moves exactly the
//! one local ID, or nothing. An A40 moves only the sender's own IDs.

use chrono::{Duration, Utc};

use crate::mllp::config_file;
use crate::support::{msa, Mllp, Server};

/// The patient's national ID, and the same with one digit wrong.
pub(crate) const NID: &str = "310120199001011234";
pub(crate) const TYPO: &str = "310120199001011284";
const PRIVACY: &str = "Bearer test-privacy-token";
const CLINICIAN: &str = "Bearer test-clinician-token";

pub(crate) fn oru(
    facility: &str,
    ctl: &str,
    local: &str,
    nid: &str,
    filler: &str,
    value: &str,
) -> Vec<u8> {
    let t = (Utc::now() + Duration::hours(8) - Duration::days(2))
        .format("%Y%m%d%H%M%S")
        .to_string();
    format!(
        "MSH|^~\\&|LIS|{facility}|HUREN|FX-YLT|{t}||ORU^R01^ORU_R01|{ctl}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||{local}^^^{facility}^MR~{nid}^^^NNCHN^NI||张^伟||19900101|M\r\
OBR|1|ORD{filler}|{filler}|K^钾^L|||{t}|||||||||||||||{t}||CH|F\r\
OBX|1|NM|K^钾^L||{value}|mmol/L|||N|||F|||{t}\r"
    )
    .into_bytes()
}

fn a08(facility: &str, ctl: &str, local: &str, nid: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|HIS|{facility}|HUREN|FX-YLT|20260101090000||ADT^A08^ADT_A01|{ctl}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
EVN|A08|20260101090000\r\
PID|1||{local}^^^{facility}^MR~{nid}^^^NNCHN^NI||张^伟||19900101|M\r\
PV1|1|O\r"
    )
    .into_bytes()
}

pub(crate) fn send(c: &mut Mllp, msg: &[u8]) {
    let ack = c.send(msg).expect("ack");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
}

/// The current reports of a patient (`nid:…` or `INST:LOCAL`, resolved to its person):
/// (hash, identity-uncertain).
fn reports(srv: &Server, patient: &str) -> Vec<(String, bool)> {
    reports_from(srv, patient, None)
}

/// [`reports`] sent by one institution, or by any.
fn reports_from(srv: &Server, patient: &str, institution: Option<&str>) -> Vec<(String, bool)> {
    let (st, body) = srv.get(&format!("/api/v1/patients/{patient}/reports"));
    assert_eq!(st, 200, "{body}");
    let mut out: Vec<(String, bool)> = body["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| institution.is_none_or(|i| r["meta"]["institution"] == i))
        .map(|r| {
            let uncertain = r["identity_uncertain"] == true;
            if uncertain {
                assert!(r["report"].is_null(), "content withheld: {r}");
            }
            (r["meta"]["hash"].as_str().unwrap().to_string(), uncertain)
        })
        .collect();
    out.sort();
    out
}

fn hashes(r: &[(String, bool)]) -> Vec<String> {
    r.iter().map(|(h, _)| h.clone()).collect()
}

fn open_reviews(srv: &Server) -> Vec<serde_json::Value> {
    let (st, body) = srv.get_with("/api/v1/identity/reviews", &[("Authorization", PRIVACY)]);
    assert_eq!(st, 200, "{body}");
    body["reviews"].as_array().unwrap().clone()
}

fn resolve(srv: &Server, id: &str, decision: &str) -> (u16, serde_json::Value) {
    srv.post(
        &format!("/api/v1/identity/reviews/{id}/resolve"),
        &[("Authorization", PRIVACY)],
        &serde_json::json!({"decision": decision, "reason": "checked with the registry"}),
    )
}

/// The demo patient's results from three institutions, all linked by her national ID.
fn patient_at_three_institutions(c: &mut Mllp) {
    send(c, &oru("FX-ZX", "ZX-1", "0012345", NID, "ZX1", "4.1"));
    send(c, &oru("FX-ZX", "ZX-2", "0012345", NID, "ZX2", "4.2"));
    send(c, &oru("FX-ZY", "ZY-1", "ZY-5566", NID, "ZY1", "4.3"));
    send(c, &oru("FX-GX", "GX-1", "GX-77", NID, "GX1", "4.4"));
}

/// (a) + (d, accept): one ORU from one institution with a typo in the national ID.
#[test]
fn an_oru_with_a_typo_moves_nothing_and_accepting_moves_exactly_its_local_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    typo_then_accept(&srv);
}

/// The scenario of the test above on a running server (also a cluster node's,
/// `tests/cli/cluster.rs`), with the test configuration.
pub(crate) fn typo_then_accept(srv: &Server) {
    let mut c = Mllp::connect(&srv.mllp);
    patient_at_three_institutions(&mut c);
    let before = reports(srv, &format!("nid:{NID}"));
    assert_eq!(before.len(), 4);
    assert!(before.iter().all(|(_, u)| !u));

    // FX-GX's next result carries the typo: acknowledged (stored), moves nothing.
    send(
        &mut c,
        &oru("FX-GX", "GX-TYPO", "GX-77", TYPO, "GX2", "9.9"),
    );
    let after = reports(srv, &format!("nid:{NID}"));
    let kept: Vec<&(String, bool)> = after.iter().filter(|r| !r.1).collect();
    assert_eq!(kept.len(), before.len(), "{after:?}");
    assert!(before.iter().all(|b| after.contains(b)), "{after:?}");
    let new: Vec<&(String, bool)> = after.iter().filter(|r| r.1).collect();
    assert_eq!(new.len(), 1, "the new report is filed identity-uncertain");
    let new_hash = new[0].0.clone();
    assert!(reports(srv, &format!("nid:{TYPO}")).is_empty());

    // In the results, the new report is IDENTITY_UNCERTAIN and shows no content.
    let (st, body) = srv.get(&format!("/api/v1/patients/nid:{NID}/results"));
    assert_eq!(st, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let r = results
        .iter()
        .find(|r| r["report"] == new_hash.as_str())
        .expect("the new report is listed");
    let codes: Vec<&str> = r["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"IDENTITY_UNCERTAIN"), "{r:#}");
    assert!(r.get("content").is_none(), "{r:#}");
    let others_shown = results
        .iter()
        .filter(|r| r["report"] != new_hash.as_str())
        .all(|r| {
            !r["verdict"]["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["code"] == "IDENTITY_UNCERTAIN")
        });
    assert!(others_shown, "{body:#}");
    // Nor by its hash, to anyone but its sender.
    let (st, body) = srv.get(&format!("/api/v1/reports/{new_hash}"));
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["code"], "IDENTITY_UNCERTAIN", "{body}");

    // One review item, for FX-GX:GX-77, naming the message; no national ID in clear.
    let open = open_reviews(srv);
    assert_eq!(open.len(), 1, "{open:#?}");
    let item = &open[0];
    assert_eq!(item["local"], "FX-GX:GX-77");
    assert_eq!(item["institution"], "FX-GX");
    assert_eq!(item["message_id"], "GX-TYPO");
    assert_ne!(item["current"], item["claimed"]);
    assert!(!item.to_string().contains(NID) && !item.to_string().contains(TYPO));
    let id = item["id"].as_str().unwrap().to_string();

    // Only the privacy officer sees and decides the queue.
    let (st, _) = srv.get_with("/api/v1/identity/reviews", &[("Authorization", CLINICIAN)]);
    assert_eq!(st, 403);
    let (st, _) = srv.post(
        &format!("/api/v1/identity/reviews/{id}/resolve"),
        &[("Authorization", CLINICIAN)],
        &serde_json::json!({"decision": "accept", "reason": "x"}),
    );
    assert_eq!(st, 403);

    // Accepted: exactly FX-GX:GX-77 moves, with its two reports; ZX and ZY stay.
    let (st, body) = resolve(srv, &id, "accept");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["moved_local"], "FX-GX:GX-77");
    assert_eq!(body["moved_reports"].as_array().unwrap().len(), 2, "{body}");
    let real = reports(srv, &format!("nid:{NID}"));
    assert_eq!(real.len(), 3, "{real:?}");
    assert!(real.iter().all(|(_, u)| !u));
    let typo = reports(srv, &format!("nid:{TYPO}"));
    assert_eq!(typo.len(), 2, "{typo:?}");
    assert!(typo.iter().all(|(_, u)| !u));
    // The local ID now resolves to the claimed person.
    let gx = reports(srv, "FX-GX:GX-77");
    assert_eq!(hashes(&gx), hashes(&typo));
    assert!(open_reviews(srv).is_empty());
    // Decided once.
    let (st, _) = resolve(srv, &id, "keep");
    assert_eq!(st, 409);

    // The decision is in the audit log, under the person the local ID left.
    let (st, a) = srv.get_with(
        &format!("/api/v1/audit?patient=nid:{NID}"),
        &[("Authorization", PRIVACY)],
    );
    assert_eq!(st, 200, "{a}");
    let decided: Vec<&serde_json::Value> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "identity_review")
        .collect();
    assert_eq!(decided.len(), 1, "{a:#}");
    assert_eq!(decided[0]["actor"], "privacy.zx");
}

/// (b) + (d, keep): an A08 from one institution with another national ID.
#[test]
fn a_contradicting_a08_moves_nothing_and_keeping_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let mut c = Mllp::connect(&srv.mllp);
    patient_at_three_institutions(&mut c);
    let before = reports(&srv, &format!("nid:{NID}"));
    assert_eq!(before.len(), 4);

    send(&mut c, &a08("FX-ZY", "A08-TYPO", "ZY-5566", TYPO));
    // Sent twice (a retransmission): one question, asked once.
    send(&mut c, &a08("FX-ZY", "A08-TYPO", "ZY-5566", TYPO));
    assert_eq!(reports(&srv, &format!("nid:{NID}")), before);
    assert!(reports(&srv, &format!("nid:{TYPO}")).is_empty());
    let open = open_reviews(&srv);
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["local"], "FX-ZY:ZY-5566");
    assert_eq!(open[0]["message_id"], "A08-TYPO");
    let id = open[0]["id"].as_str().unwrap().to_string();

    // Kept: nothing moves.
    let (st, body) = resolve(&srv, &id, "keep");
    assert_eq!(st, 200, "{body}");
    assert!(body["moved_local"].is_null(), "{body}");
    assert_eq!(body["moved_reports"].as_array().unwrap().len(), 0);
    assert_eq!(reports(&srv, &format!("nid:{NID}")), before);
    assert!(reports(&srv, &format!("nid:{TYPO}")).is_empty());
    assert!(open_reviews(&srv).is_empty());
    // An unknown item: 404.
    let (st, _) = resolve(&srv, "999-0", "keep");
    assert_eq!(st, 404);
}

/// (c): an A40 from one institution moves only its own IDs, never the links others made.
#[test]
fn an_a40_moves_only_the_senders_own_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let mut c = Mllp::connect(&srv.mllp);
    patient_at_three_institutions(&mut c);
    let before = reports(&srv, &format!("nid:{NID}"));
    assert_eq!(before.len(), 4);
    let gx = reports_from(&srv, "FX-GX:GX-77", Some("FX-GX"));
    assert_eq!(gx.len(), 1);

    // FX-GX merges its GX-77 into GX-NEW (another person at FX-GX).
    send(&mut c, &oru("FX-GX", "GX-N", "GX-NEW", TYPO, "GX9", "5.0"));
    let a40 = "MSH|^~\\&|HIS|FX-GX|HUREN|FX-YLT|20260101093000||ADT^A40^ADT_A39|GX-A40|P|2.5.1|||||CHN|UNICODE UTF-8\r\
EVN|A40|20260101093000\rPID|1||GX-NEW^^^FX-GX^MR||张^伟||19900101|M\rMRG|GX-77^^^FX-GX^MR\r";
    send(&mut c, a40.as_bytes());

    // The links FX-ZX and FX-ZY made stay: their three results are still hers.
    let after = reports(&srv, &format!("nid:{NID}"));
    let gx_hash = &gx[0];
    let mut want: Vec<(String, bool)> = before.iter().filter(|r| r != &gx_hash).cloned().collect();
    want.sort();
    assert_eq!(after, want, "only FX-GX's ID left");
    // FX-GX's own ID went where its merge said.
    let merged = reports(&srv, &format!("nid:{TYPO}"));
    assert_eq!(merged.len(), 2, "{merged:?}");
    assert!(merged.contains(gx_hash));
    assert!(open_reviews(&srv).is_empty());
}
