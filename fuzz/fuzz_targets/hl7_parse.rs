//! Arbitrary bytes through batch splitting, parsing, interpretation (each lab report's
//! canonical JSON checked against its definition) and the ACK builder.
#![no_main]

use huren_hl7::{build_ack, interpret, split_batch, AckCode, Charset, Message, SenderConfig};
use libfuzzer_sys::fuzz_target;

/// A report's canonical JSON equals its definition (a sorted `serde_json::Value`, written
/// compactly) and reads back to the same bytes.
fn canonical_agrees(r: &huren_model::Report) {
    let bytes = r.to_canonical_json().expect("a report always has canonical JSON");
    let mut v = serde_json::to_value(r).expect("to_value");
    v.sort_all_objects();
    assert_eq!(bytes, serde_json::to_vec(&v).expect("to_vec"), "not the definition");
    let back: huren_model::Report = serde_json::from_slice(&bytes).expect("reads back");
    assert_eq!(back.to_canonical_json().expect("again"), bytes, "not stable");
}

fuzz_target!(|data: &[u8]| {
    let cfg = SenderConfig::default();
    let now = chrono::DateTime::parse_from_rfc3339("2025-06-24T10:00:00+08:00").unwrap();
    let parts = match split_batch(data) {
        Ok(p) => p,
        Err(_) => return,
    };
    for part in parts {
        for default in [None, Some(Charset::Gb18030)] {
            match Message::parse(part, default) {
                Ok(m) => match interpret(&m, &cfg, huren_model::ContentHash::of(part)) {
                    Ok(i) => {
                        if let huren_hl7::Content::Lab(reports) = &i.content {
                            for r in reports {
                                canonical_agrees(r);
                            }
                        }
                        let _ = build_ack(Some(&i.header), AckCode::Accept, &i.warnings, now);
                    }
                    Err(r) => {
                        let _ = build_ack(r.header.as_deref(), AckCode::Error, &r.diagnostics, now);
                    }
                },
                Err(r) => {
                    let _ = build_ack(r.header.as_deref(), AckCode::Reject, &r.diagnostics, now);
                }
            }
        }
    }
});
