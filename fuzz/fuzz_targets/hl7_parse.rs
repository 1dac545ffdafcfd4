//! Arbitrary bytes through batch splitting, parsing, interpretation and the ACK builder.
#![no_main]

use huren_hl7::{build_ack, interpret, split_batch, AckCode, Charset, Message, SenderConfig};
use libfuzzer_sys::fuzz_target;

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
