//! One test per defect of hl7-parser 0.3.0 that made us write our own parser.

use huren_hl7::{interpret, Message, SenderConfig};
use huren_model::ContentHash;

fn cfg() -> SenderConfig {
    SenderConfig {
        institution: "FX-ZX".into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "s".into(),
    }
}

const ORU: &str = "MSH|^~\\&|LIS|FX-ZX|||20250624101500||ORU^R01|C1|P|2.5.1\rPID|1||P1^^^FX-ZX^MR||王^芳\rOBR|1||F1|CBC^血常规\\T\\尿常规^L|||20250624093000||||||||||||||||||F\rOBX|1|NM|HGB^血红蛋白^L||120|g/L||N|||F\rOBX|2|NM|PLT^血小板^L||200|10*9/L||N|||F\r";

fn obs_count(m: &Message) -> usize {
    match interpret(m, &cfg(), ContentHash::of(b"x")).unwrap().content {
        huren_hl7::Content::Lab(r) => r[0].lab.as_ref().unwrap().observations.len(),
        _ => 0,
    }
}

#[test]
fn escape_after_non_ascii_text_does_not_panic() {
    let m = Message::parse(ORU.as_bytes(), None).unwrap();
    let it = interpret(&m, &cfg(), ContentHash::of(b"x")).unwrap();
    let huren_hl7::Content::Lab(r) = it.content else {
        panic!()
    };
    assert_eq!(
        r[0].lab.as_ref().unwrap().service_name.as_deref(),
        Some("血常规&尿常规")
    );
}

#[test]
fn a_bad_segment_is_an_error_not_a_silent_truncation() {
    let bad = ORU.replace("OBX|2|", "??bad line\rOBX|2|");
    let e = Message::parse(bad.as_bytes(), None).unwrap_err();
    assert!(e.diagnostics[0].location.starts_with("line"), "{e}");
}

#[test]
fn crlf_and_lf_segment_ends_keep_every_segment() {
    for sep in ["\r\n", "\n"] {
        let m = Message::parse(ORU.replace('\r', sep).as_bytes(), None).unwrap();
        assert_eq!(m.segment_count(), 5);
        assert_eq!(obs_count(&m), 2);
    }
}

#[test]
fn a_stray_mllp_trailer_is_tolerated_with_a_warning() {
    let s = format!("{ORU}\x1c\r");
    let m = Message::parse(s.as_bytes(), None).unwrap();
    assert_eq!(obs_count(&m), 2);
    assert!(!m.warnings().is_empty());
}

#[test]
fn a_utf8_bom_is_accepted() {
    let mut b = vec![0xEF, 0xBB, 0xBF];
    b.extend_from_slice(ORU.as_bytes());
    let m = Message::parse(&b, None).unwrap();
    assert_eq!(m.header().control_id, "C1");
}

#[test]
fn v27_truncation_character_does_not_shift_msh() {
    let s = ORU
        .replace("MSH|^~\\&|", "MSH|^~\\&#|")
        .replace("|2.5.1", "|2.7");
    let m = Message::parse(s.as_bytes(), None).unwrap();
    assert_eq!(m.header().sending_facility, "FX-ZX");
    assert_eq!(m.header().control_id, "C1");
    assert_eq!(m.header().version, "2.7");
    assert_eq!(m.delimiters().truncation, Some('#'));
}

#[test]
fn hex_highlight_and_normal_escapes_are_decoded() {
    let s = ORU.replace("血红蛋白", "\\H\\血红\\N\\\\XE89B8B\\\\XE799BD\\");
    let m = Message::parse(s.as_bytes(), None).unwrap();
    let huren_hl7::Content::Lab(r) = interpret(&m, &cfg(), ContentHash::of(b"x"))
        .unwrap()
        .content
    else {
        panic!()
    };
    assert_eq!(
        r[0].lab.as_ref().unwrap().observations[0].name.as_deref(),
        Some("血红蛋白")
    );
}

#[test]
fn one_mebibyte_of_field_separators_is_cheap() {
    let mut s =
        String::from("MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C1|P|2.5.1\rPID|1||P1\rOBX|1|ST|X||");
    s.push_str(&"|".repeat(1 << 20));
    let t = std::time::Instant::now();
    let m = Message::parse(s.as_bytes(), None).unwrap();
    // Fields are ranges computed on access: the parsed form stays about the input's size.
    assert_eq!(m.segment_count(), 3);
    assert!(m.text().len() < s.len() + 16);
    let _ = interpret(&m, &cfg(), ContentHash::of(b"x"));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn timestamps_without_offset_are_sender_local_time() {
    let m = Message::parse(ORU.as_bytes(), None).unwrap();
    let huren_hl7::Content::Lab(r) = interpret(&m, &cfg(), ContentHash::of(b"x"))
        .unwrap()
        .content
    else {
        panic!()
    };
    assert_eq!(
        r[0].specimen_collected_at.as_deref(),
        Some("2025-06-24T09:30:00+08:00")
    );
    assert_eq!(
        r[0].reported_at.as_deref(),
        Some("2025-06-24T10:15:00+08:00")
    );
}

#[test]
fn one_mebibyte_of_pipes_only_is_cheap() {
    // Nothing but MSH and 1 MiB of `|`: refused (MSH-10 empty), quickly, without a per-field
    // index.
    let mut s = String::from("MSH|^~\\&");
    s.push_str(&"|".repeat(1 << 20));
    let t = std::time::Instant::now();
    let e = Message::parse(s.as_bytes(), None).unwrap_err();
    assert_eq!(e.diagnostics[0].location, "MSH-10");
    // And 1 MiB of repetitions and components in OBX-5 and OBX-8.
    let mut s = String::from(
        "MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C1|P|2.5.1\rPID|1||P1\rOBR|1||F1|X\rOBX|1|ST|X||",
    );
    s.push_str(&"~^".repeat(1 << 19));
    s.push_str("||||");
    s.push_str(&"~".repeat(1 << 20));
    let m = Message::parse(s.as_bytes(), None).unwrap();
    assert_eq!(m.segment_count(), 4);
    let it = interpret(&m, &cfg(), ContentHash::of(b"x")).unwrap();
    let huren_hl7::Content::Lab(r) = it.content else {
        panic!()
    };
    assert_eq!(
        r[0].lab.as_ref().unwrap().observations[0].value.len(),
        1 << 20
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

/// No quadratic paths: many messages and envelope lines in a batch, many distinct segment
/// IDs with escapes in one message.
#[test]
fn adversarial_shapes_stay_linear() {
    let t = std::time::Instant::now();
    let mut batch = String::from("FHS|^~\\&\r");
    for i in 0..40_000 {
        batch.push_str(&format!("MSH|^~\\&|||||||ORU^R01|{i}|P|2.5\rBHS|\r"));
    }
    assert_eq!(
        huren_hl7::split_batch(batch.as_bytes()).unwrap().len(),
        40_000
    );
    let mut msg = String::from("MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C1|P|2.5.1\r");
    for i in 0..46_000u32 {
        let a = |k: u32| char::from(b'A' + (k % 26) as u8);
        msg.push_str(&format!("Z{}{}|\\Q\\\r", a(i), a(i / 26 % 26 + (i / 676))));
    }
    let m = Message::parse(msg.as_bytes(), None).unwrap();
    assert_eq!(m.warnings().len(), 20, "escape warnings are capped");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}
