//! The public API as the server uses it: `check`, delimiters, charsets, ACKs for refusals,
//! warnings and the mapping rules.

use huren_hl7::{
    build_ack, check, interpret, AckCode, Charset, Content, Message, RejectKind, SenderConfig,
    Severity,
};
use huren_model::{ContentHash, ReportStatus};

fn cfg() -> SenderConfig {
    SenderConfig {
        institution: "FX-ZX".into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "s".into(),
    }
}

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339("2025-06-24T10:15:00+08:00").unwrap()
}

const MSH: &str = "MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|20250624101500||ORU^R01^ORU_R01|C1|P|2.5.1";

fn lab(s: &str) -> (Vec<huren_model::Report>, Vec<huren_hl7::Diagnostic>) {
    let m = Message::parse(s.as_bytes(), None).unwrap();
    let it = interpret(&m, &cfg(), ContentHash::of(s.as_bytes())).unwrap();
    match it.content {
        Content::Lab(r) => (r, it.warnings),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_message_types_are_refused_with_code_200() {
    let orm = "MSH|^~\\&|HIS|FX-ZX|||20250624||ORM^O01|O1|P|2.3\rPID|1||P1\r";
    let e = check(orm.as_bytes(), None).unwrap_err();
    assert_eq!(e.kind, RejectKind::Reject);
    assert_eq!(e.diagnostics[0].code, 200);
    assert!(e.to_string().contains("not supported"), "{e}");
    let ack = String::from_utf8(build_ack(
        e.header.as_deref(),
        AckCode::Reject,
        &e.diagnostics,
        now(),
    ))
    .unwrap();
    assert!(ack.contains("\rMSA|AR|O1|"), "{ack}");
    assert!(
        ack.contains("\rERR|MSH^1^9^200&Unsupported message type&HL70357\r"),
        "{ack}"
    );
    let ev = check(
        b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R30|X1|P|2.5\rPID|1||P1\r",
        None,
    )
    .unwrap_err();
    assert_eq!(ev.diagnostics[0].code, 201);
}

#[test]
fn unsupported_version_and_empty_control_id_are_rejected() {
    let e = check(
        b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|V1|P|3.0\rPID|1||P1\r",
        None,
    )
    .unwrap_err();
    assert_eq!((e.kind, e.diagnostics[0].code), (RejectKind::Reject, 203));
    let e = check(
        b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01||P|2.5\rPID|1||P1\r",
        None,
    )
    .unwrap_err();
    assert_eq!((e.kind, e.diagnostics[0].code), (RejectKind::Reject, 101));
    assert_eq!(e.diagnostics[0].location, "MSH-10");
    for v in ["2.1", "2.3.1", "2.8.2"] {
        let s = format!("MSH|^~\\&|LIS|FX-ZX|||20250624||ADT^A08|V|P|{v}\rPID|1||P1\r");
        assert!(check(s.as_bytes(), None).is_ok(), "{v}");
    }
}

#[test]
fn any_delimiters_are_read_from_msh() {
    // Field separator `^`, component `~`, repetition `|` (valid HL7, breaks naive parsers).
    let s = "MSH^~|\\&^LIS^FX-ZX^^^20250624101500^^ORU~R01^ALT-1^P^2.4\rPID^1^^P9~~~FX-ZX~MR^^王~芳\rOBR^1^^F9^CBC~血常规\rOBX^1^NM^HGB~血红蛋白^^5.60^g/L^^N^^^F\r";
    let m = Message::parse(s.as_bytes(), None).unwrap();
    assert_eq!(m.header().control_id, "ALT-1");
    assert_eq!(m.header().message_type, "ORU");
    let it = interpret(&m, &cfg(), ContentHash::of(b"x")).unwrap();
    let Content::Lab(r) = it.content else {
        panic!()
    };
    assert_eq!(r[0].patient.local_id, "P9");
    assert_eq!(r[0].patient.name.as_deref(), Some("王芳"));
    assert_eq!(r[0].source.source_key, "F9");
    assert_eq!(r[0].lab.as_ref().unwrap().observations[0].value, "5.60");
    let ack = String::from_utf8(build_ack(Some(m.header()), AckCode::Accept, &[], now())).unwrap();
    assert!(ack.starts_with("MSH^~|\\&^^^LIS^FX-ZX^"), "{ack}");
    assert!(ack.contains("\rMSA^AA^ALT-1\r"), "{ack}");
}

/// A GB18030 MSH whose Chinese text has a trail byte 0x7C (`|`) must not shift MSH-18.
#[test]
fn gb18030_trail_bytes_that_look_like_delimiters_do_not_shift_msh18() {
    let c = ('\u{4e00}'..'\u{9fa5}')
        .find(|c| encoding_rs::GB18030.encode(&c.to_string()).0.get(1) == Some(&b'|'))
        .expect("a hanzi whose GB18030 trail byte is |");
    let text = format!(
        "MSH|^~\\&|LIS|FX-SQ01^{c}社区|||20250622100000||ORU^R01|GB-1|P|2.5|||||CHN|GB 18030-2000\rPID|1||P1||{c}^伟\rOBR|1||F1|X^Y\r"
    );
    let bytes = encoding_rs::GB18030.encode(&text).0.into_owned();
    let m = Message::parse(&bytes, None).unwrap();
    assert_eq!(m.charset(), Charset::Gb18030);
    assert_eq!(m.header().sending_facility, "FX-SQ01");
    let Content::Lab(r) = interpret(&m, &cfg(), ContentHash::of(&bytes))
        .unwrap()
        .content
    else {
        panic!()
    };
    assert_eq!(
        r[0].patient.name.as_deref(),
        Some(format!("{c}伟").as_str())
    );
    // The ACK goes back in GB18030.
    let ack = build_ack(Some(m.header()), AckCode::Accept, &[], now());
    let (back, _, bad) = encoding_rs::GB18030.decode(&ack);
    assert!(!bad);
    assert!(back.contains("|GB 18030-2000\r"), "{back}");
}

#[test]
fn latin1_and_unknown_charsets() {
    let mut b =
        b"MSH|^~\\&|LIS|FX-ZX|||20250624||ADT^A08|L1|P|2.5|||||CHN|8859/1\rPID|1||P1||M".to_vec();
    b.extend_from_slice(&[0xFC]); // ü
    b.extend_from_slice(b"ller^Hans\r");
    let it = check(&b, None).unwrap();
    let Content::PatientUpdate(p) = it.content else {
        panic!()
    };
    assert_eq!(p.name.as_deref(), Some("Müller Hans"));
    let e = check(
        b"MSH|^~\\&|LIS|FX-ZX|||20250624||ADT^A08|E1|P|2.5|||||CHN|EBCDIC\rPID|1||P1\r",
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind, RejectKind::Reject);
    assert_eq!(e.diagnostics[0].location, "MSH-18");
    assert_eq!(e.header.unwrap().control_id, "E1");
    assert_eq!(Charset::from_label("unicode utf-8"), Some(Charset::Utf8));
    assert_eq!(Charset::from_label("GB2312"), Some(Charset::Gb18030));
    assert_eq!(Charset::from_label("ascii"), Some(Charset::Ascii));
}

#[test]
fn status_rules() {
    let base = format!("{MSH}\rPID|1||P1\rOBR|1||F1|CBC^血常规|||20250624||||||||||||||||||STATUS\rOBX|1|NM|A^a||1|||N|||S1\rOBX|2|NM|B^b||2|||N|||S2\r");
    let status = |obr: &str, s1: &str, s2: &str| {
        let (r, w) = lab(&base
            .replace("STATUS", obr)
            .replace("S1", s1)
            .replace("S2", s2));
        let derived = w.iter().any(|d| d.location == "OBR[1]-25");
        (r[0].status, derived)
    };
    assert_eq!(status("F", "F", "F"), (ReportStatus::Final, false));
    assert_eq!(status("C", "F", "C"), (ReportStatus::Corrected, false));
    assert_eq!(status("A", "F", "F"), (ReportStatus::Corrected, false));
    assert_eq!(status("X", "X", "X"), (ReportStatus::Cancelled, false));
    assert_eq!(status("D", "", ""), (ReportStatus::Cancelled, false));
    assert_eq!(status("P", "P", "F"), (ReportStatus::Preliminary, false));
    assert_eq!(status("R", "", ""), (ReportStatus::Preliminary, false));
    assert_eq!(status("", "F", "F"), (ReportStatus::Final, true));
    assert_eq!(status("", "F", "C"), (ReportStatus::Corrected, true));
    assert_eq!(status("", "X", "X"), (ReportStatus::Cancelled, true));
    assert_eq!(status("", "F", "P"), (ReportStatus::Preliminary, true));
}

#[test]
fn order_numbers_and_observation_details() {
    // Two groups; the second has no OBR-3 and no ORC of its own: it must not inherit the
    // first group's ORC-3.
    let s = format!(
        "{MSH}\rPID|1||P1^^^FX-ZX^MR\rORC|RE|O1|F-ORC\rOBR|1|O1||CBC^血常规|||20250624083000\rOBX|1|CWE|ABO^血型^L||A^A型^L~B^B型^L||||||F\rOBX|2|NM|K^钾||abc|mmol/L|3.5-5.3|HH~A|||F|||20250624100000+0800\rOBR|2|O2||LYTE\rNTE|1||第一行\\.br\\第二行\rNTE|2||\\Zfoo\\\r"
    );
    let (r, w) = lab(&s);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].source.source_key, "F-ORC", "filler from ORC-3");
    assert_eq!(r[1].source.source_key, "placer:O2", "placer fallback");
    assert!(w
        .iter()
        .any(|d| d.location == "OBR[2]-3" && d.severity == Severity::Warning && d.code == 101));
    let obs = &r[0].lab.as_ref().unwrap().observations;
    assert_eq!(obs[0].value, "A^A型^L~B^B型^L", "CWE kept as sent");
    assert_eq!(obs[1].value, "abc");
    assert!(w
        .iter()
        .any(|d| d.location == "OBX[2]-5" && d.code == 102 && d.line == Some(6)));
    assert_eq!(obs[1].abnormal_flags_raw.as_deref(), Some("HH~A"));
    assert_eq!(obs[1].abnormal_flags.len(), 2);
    assert!(obs[1].abnormal_flags[0].is_critical());
    assert_eq!(
        obs[1].observed_at.as_deref(),
        Some("2025-06-24T10:00:00+08:00")
    );
    assert_eq!(r[1].conclusion.as_deref(), Some("第一行\n第二行\n\\Zfoo\\"));
    assert!(
        w.iter().any(|d| d.location == "NTE[2]-3" && d.code == 102),
        "unknown escape warned: {w:?}"
    );
    // No order number at all: error 101 at OBR[n]-3.
    let e = interpret(
        &Message::parse(format!("{MSH}\rPID|1||P1\rOBR|1|||CBC\r").as_bytes(), None).unwrap(),
        &cfg(),
        ContentHash::of(b"x"),
    )
    .unwrap_err();
    assert_eq!(e.kind, RejectKind::Error);
    assert_eq!(
        (e.diagnostics[0].location.as_str(), e.diagnostics[0].code),
        ("OBR[1]-3", 101)
    );
}

#[test]
fn patient_identifiers_names_and_birth_dates() {
    let s = format!("{MSH}\rPID|1||310120199001011234^^^NNCHN^NI~0012345^^^FX-ZX^MR||SMITH^JOHN||196203520|M\rOBR|1||F1|X\r");
    let (r, w) = lab(&s);
    let p = &r[0].patient;
    assert_eq!(p.local_id, "0012345", "national ID is never the local ID");
    assert_eq!(
        p.national_id_key.as_deref(),
        Some(huren_model::national_id_key("s", "310120199001011234").as_str())
    );
    assert_eq!(p.name.as_deref(), Some("SMITH JOHN"));
    assert_eq!(p.birth_date, None);
    assert!(w.iter().any(|d| d.location == "PID[1]-7"));
    let dump = format!("{r:?}{w:?}");
    assert!(!dump.contains("310120199001011234"));
    // Missing PID-3: error 101.
    let e = check(format!("{MSH}\rPID|1||\rOBR|1||F1|X\r").as_bytes(), None).unwrap_err();
    assert_eq!(e.kind, RejectKind::Error);
    assert_eq!(
        (e.diagnostics[0].location.as_str(), e.diagnostics[0].code),
        ("PID[1]-3", 101)
    );
}

#[test]
fn adt_merge() {
    let s = "MSH|^~\\&|HIS|FX-ZX|||20250625||ADT^A40^ADT_A39|M1|P|2.5\rEVN|A40\rPID|1||NEW1^^^FX-ZX^MR\rMRG|OLD1^^^FX-ZX^MR\rPID|2||NEW1^^^FX-ZX^MR\rMRG|OLD2\r";
    let Content::PatientMerge { surviving, merged } = check(s.as_bytes(), None).unwrap().content
    else {
        panic!()
    };
    assert_eq!(surviving.local_id, "NEW1");
    let ids: Vec<&str> = merged.iter().map(|p| p.local_id.as_str()).collect();
    assert_eq!(ids, ["OLD1", "OLD2"]);
}

/// `national_ids` gives the national IDs of PID-3 in the clear (by type NI/NNCHN or authority),
/// each once, and no local ID; a message without one gives none.
#[test]
fn national_ids_are_read_from_pid3_only() {
    let with = b"MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|20250624101500||ORU^R01|C1|P|2.5.1\rPID|1||0012345^^^FX-ZX^MR~310120199001011234^^^NNCHN^NI~310120199001011234^^^CHN^NNCHN||Zhang^Wei\rOBR|1||F1|K^K^L\r";
    let msg = huren_hl7::Message::parse(with, None).expect("parse");
    assert_eq!(
        huren_hl7::national_ids(&msg),
        vec!["310120199001011234".to_string()]
    );
    let without = b"MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|20250624101500||ORU^R01|C2|P|2.5.1\rPID|1||0012345^^^FX-ZX^MR||Zhang^Wei\r";
    let msg = huren_hl7::Message::parse(without, None).expect("parse");
    assert!(huren_hl7::national_ids(&msg).is_empty());
}
