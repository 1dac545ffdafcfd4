//! The project's HL7 fixtures: GB18030 generation, snapshots of the interpreted output, and
//! the malformed cases.

use std::path::{Path, PathBuf};

use huren_hl7::{interpret, split_batch, Charset, Content, Message, SenderConfig};
use huren_model::{canonical_json, ContentHash};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hl7")
}

fn cfg(inst: &str) -> SenderConfig {
    SenderConfig {
        institution: inst.into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "fixture-secret".into(),
    }
}

/// Fixtures that are bytes rather than text are generated here and compared with the
/// committed files (`UPDATE_FIXTURES=1` rewrites them):
/// - `oru_gb18030.hl7` is `oru_gb18030.utf8.txt` encoded in GB18030;
/// - `malformed/undecodable_utf8.hl7` declares UNICODE UTF-8 but carries the GB18030 bytes
///   of 张^伟 in PID-5.
#[test]
fn fixtures_are_current() {
    let src = std::fs::read_to_string(dir().join("oru_gb18030.utf8.txt")).unwrap();
    let (gb, _, bad) = encoding_rs::GB18030.encode(&src);
    assert!(!bad);
    assert!(
        std::str::from_utf8(&gb).is_err(),
        "the fixture really is GB18030"
    );
    let mut undecodable = b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|BADUTF-1|P|2.5.1|||||CHN|UNICODE UTF-8\rPID|1||P1||".to_vec();
    undecodable.extend_from_slice(&encoding_rs::GB18030.encode("张^伟").0);
    undecodable.push(b'\r');
    let mut stale = Vec::new();
    for (name, want) in [
        ("oru_gb18030.hl7", gb.as_ref()),
        ("malformed/undecodable_utf8.hl7", undecodable.as_slice()),
    ] {
        let path = dir().join(name);
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(&path, want).unwrap();
        }
        if std::fs::read(&path).ok().as_deref() != Some(want) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from their generator; run with UPDATE_FIXTURES=1"
    );
}

fn interpret_file(name: &str) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let mut out = Vec::new();
    for m in split_batch(&bytes).unwrap() {
        let inst = {
            let msg = Message::parse(m, None).unwrap();
            msg.header().sending_facility.clone()
        };
        let msg = Message::parse(m, None).unwrap();
        let it = interpret(&msg, &cfg(&inst), ContentHash::of(m))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let content = match it.content {
            Content::Lab(r) => {
                // Each report as the store will see it: canonical JSON.
                let canon: Vec<serde_json::Value> = r
                    .iter()
                    .map(|x| serde_json::from_slice(&canonical_json(x).unwrap()).unwrap())
                    .collect();
                serde_json::json!({ "lab": canon })
            }
            Content::PatientUpdate(p) => serde_json::json!({"patient_update": p}),
            Content::Visit(v) => serde_json::json!({"visit": {
                "patient": v.patient, "event": format!("{:?}", v.event), "at": v.at,
                "at_field": v.at_field,
            }}),
            Content::PatientMerge { surviving, merged } => {
                serde_json::json!({"merge": {"surviving": surviving, "merged": merged}})
            }
        };
        out.push(
            serde_json::json!({"header": it.header, "content": content, "warnings": it.warnings}),
        );
    }
    out
}

/// Each good fixture's interpretation equals `<name>.expected.json` (`UPDATE_EXPECT=1`
/// rewrites them; review the diff).
#[test]
fn snapshots() {
    for name in [
        "oru_multi_obr_cn_utf8.hl7",
        "oru_gb18030.hl7",
        "oru_corrected.hl7",
        "oru_cancelled.hl7",
        "adt_a08.hl7",
        "adt_a40.hl7",
        "batch_fhs.hl7",
        "oru_v27_truncation.hl7",
    ] {
        // Sorted: key order must not depend on serde_json's `preserve_order` feature, which
        // another crate of the workspace may switch on.
        let mut v = serde_json::Value::from(interpret_file(name));
        v.sort_all_objects();
        let got = serde_json::to_string_pretty(&v).unwrap() + "\n";
        let path = dir().join(name.replace(".hl7", ".expected.json"));
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            got == want,
            "{name}: output differs from {}; run with UPDATE_EXPECT=1 and review\n{got}",
            path.display()
        );
    }
}

#[test]
fn key_facts_of_the_fixtures() {
    let v = interpret_file("oru_multi_obr_cn_utf8.hl7");
    let reports = v[0]["content"]["lab"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "one report per OBR");
    let cbc = &reports[0];
    assert_eq!(cbc["source"]["source_key"], "LAB20250624001");
    assert_eq!(cbc["lab"]["observations"][0]["value"], "5.60");
    assert_eq!(cbc["lab"]["observations"][1]["name"], "血红蛋白");
    assert_eq!(cbc["conclusion"], "标本轻度溶血&结果仅供参考");
    assert_eq!(cbc["specimen_collected_at"], "2025-06-24T08:30:00+08:00");
    assert_eq!(cbc["patient"]["name"], "张伟");
    assert_eq!(cbc["patient"]["local_id"], "0012345");
    let nidk = cbc["patient"]["national_id_key"].as_str().unwrap();
    assert!(nidk.starts_with("nidk:"));
    let all = serde_json::to_string(&v).unwrap();
    assert!(
        !all.contains("310120199001011234"),
        "the raw national ID must not survive interpretation"
    );
    let lyte = &reports[1];
    assert_eq!(
        lyte["lab"]["observations"][0]["abnormal_flags"][0],
        "critical_low"
    );
    assert_eq!(
        lyte["lab"]["observations"][2]["value"],
        "危急值已电话通知临床 \\ 王医生"
    );

    let gb = interpret_file("oru_gb18030.hl7");
    assert_eq!(
        gb[0]["content"]["lab"][0]["lab"]["service_name"],
        "血脂四项"
    );
    assert_eq!(
        gb[0]["content"]["lab"][0]["patient"]["national_id_key"].as_str(),
        Some(nidk)
    );

    assert_eq!(
        interpret_file("oru_corrected.hl7")[0]["content"]["lab"][0]["status"],
        "corrected"
    );
    assert_eq!(
        interpret_file("oru_cancelled.hl7")[0]["content"]["lab"][0]["status"],
        "cancelled"
    );
    let b = interpret_file("batch_fhs.hl7");
    assert_eq!(b.len(), 2);
    assert_eq!(b[1]["content"]["lab"][0]["patient"]["name"], "李娜");
    let m = interpret_file("adt_a40.hl7");
    assert_eq!(m[0]["content"]["merge"]["merged"][0]["local_id"], "0099887");
    let v27 = interpret_file("oru_v27_truncation.hl7");
    assert_eq!(v27[0]["header"]["control_id"], "FXZX-V27-0001");
    assert_eq!(v27[0]["header"]["accept_ack_type"], "AL");
}

#[test]
fn malformed_fixtures_are_rejected_with_a_location() {
    let mut n = 0;
    for e in std::fs::read_dir(dir().join("malformed")).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let res = Message::parse(&bytes, None)
            .and_then(|m| interpret(&m, &cfg("FX-ZX"), ContentHash::of(&bytes)));
        let err = res
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", p.display()));
        assert!(!err.diagnostics.is_empty());
        assert!(!err.diagnostics[0].location.is_empty());
        n += 1;
    }
    assert!(n >= 6);
    let m = std::fs::read(dir().join("malformed/missing_order_numbers.hl7")).unwrap();
    let e = interpret(
        &Message::parse(&m, None).unwrap(),
        &cfg("FX-ZX"),
        ContentHash::of(&m),
    )
    .unwrap_err();
    assert_eq!(e.diagnostics[0].location, "OBR[1]-3");
    assert_eq!(e.diagnostics[0].code, 101);
    let u = std::fs::read(dir().join("malformed/undecodable_utf8.hl7")).unwrap();
    let e = Message::parse(&u, None).unwrap_err();
    assert_eq!(e.kind, huren_hl7::RejectKind::Reject);
    assert_eq!(e.diagnostics[0].location, "line 2");
    // The header could still be read, so the ACK names the refused message.
    assert_eq!(e.header.as_ref().unwrap().control_id, "BADUTF-1");
    assert!(
        e.diagnostics[0].message.contains("not valid UNICODE UTF-8"),
        "{e}"
    );
    // The same bytes are fine when the sender is configured as GB18030 and sends no MSH-18 ...
    let raw: Vec<u8> = {
        let s = u.clone();
        let pos = s
            .windows(17)
            .position(|w| w == b"|CHN|UNICODE UTF-")
            .unwrap();
        let mut v = s[..pos + 5].to_vec();
        v.extend_from_slice(&s[pos + 18..]);
        v
    };
    let msg = Message::parse(&raw, Some(Charset::Gb18030)).unwrap();
    assert_eq!(msg.charset(), Charset::Gb18030);
    assert!(msg.text().contains("张^伟"));
}

/// A GB18030 sender that leaves MSH-18 empty is decoded with its configured charset, and
/// gives the same reports as with MSH-18 = `GB 18030-2000`; without that configuration the
/// message is refused (UTF-8 is assumed and nothing is replaced).
#[test]
fn gb18030_per_sender_default() {
    let src = std::fs::read_to_string(dir().join("oru_gb18030.utf8.txt")).unwrap();
    let no18 = src.replace("|CHN|GB 18030-2000", "|CHN|");
    assert_ne!(no18, src);
    let bytes = encoding_rs::GB18030.encode(&no18).0.into_owned();
    let mut c = cfg("FX-SQ01");
    c.charset = Some(Charset::Gb18030);
    let with_default = huren_hl7::check(&bytes, Some(&c)).unwrap();
    let gb = std::fs::read(dir().join("oru_gb18030.hl7")).unwrap();
    let with_msh18 = huren_hl7::check(&gb, Some(&c)).unwrap();
    let (Content::Lab(a), Content::Lab(b)) = (with_default.content, with_msh18.content) else {
        panic!("not lab")
    };
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].lab, b[0].lab);
    assert_eq!(a[0].patient, b[0].patient);
    assert_eq!(a[0].patient.name.as_deref(), Some("张伟"));
    let e = huren_hl7::check(&bytes, None).unwrap_err();
    assert_eq!(e.kind, huren_hl7::RejectKind::Reject);
    assert_eq!(
        e.header.unwrap().control_id,
        "SQ01-20250622-0009",
        "the refusal still names the message"
    );
}
