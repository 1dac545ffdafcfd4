//! Bounded property-based fuzzing of every parser entry point: arbitrary bytes and mutated
//! valid messages never panic.

use bytes::BytesMut;
use huren_hl7::mllp::MllpCodec;
use huren_hl7::{build_ack, interpret, split_batch, AckCode, Message, SenderConfig};
use huren_model::ContentHash;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const SEED: &str = "MSH|^~\\&|LIS|FX-ZX|||20250624101500||ORU^R01|C1|P|2.5.1|||AL||CHN|UNICODE UTF-8\rPID|1||P1^^^FX-ZX^MR~3101^^^NNCHN^NI||王^芳||19800101|F\rORC|RE|O1|F1\rOBR|1|O1|F1|CBC^血常规\\T\\尿常规^L|||20250624093000||||||||||||||||||F\rOBX|1|NM|HGB^血红蛋白^L||120|g/L|115-150|N|||F|||20250624\rNTE|1||\\XE8A180\\\\.br\\x\rMRG|P0\r";

fn cfg() -> SenderConfig {
    SenderConfig {
        institution: "FX-ZX".into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "s".into(),
    }
}

fn exercise(bytes: &[u8]) {
    let now = chrono::DateTime::parse_from_rfc3339("2025-06-24T10:00:00+08:00").unwrap();
    if let Ok(parts) = split_batch(bytes) {
        for p in parts {
            // The GB18030 default sees what a configured GB18030 sender would send.
            let _ = Message::parse(p, Some(huren_hl7::Charset::Gb18030))
                .map(|m| interpret(&m, &cfg(), ContentHash::of(p)));
            match Message::parse(p, None) {
                Ok(m) => {
                    let _ = build_ack(Some(m.header()), AckCode::Accept, m.warnings(), now);
                    match interpret(&m, &cfg(), ContentHash::of(p)) {
                        Ok(it) => {
                            let _ = build_ack(Some(&it.header), AckCode::Accept, &it.warnings, now);
                        }
                        Err(r) => {
                            let _ =
                                build_ack(r.header.as_deref(), AckCode::Error, &r.diagnostics, now);
                        }
                    }
                }
                Err(r) => {
                    let _ = build_ack(r.header.as_deref(), AckCode::Reject, &r.diagnostics, now);
                }
            }
        }
    }
    let mut c = MllpCodec::new(4096);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = c.decode(&mut buf) {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_messages(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)) {
        let mut b = SEED.as_bytes().to_vec();
        for (i, byte, op) in edits {
            if b.is_empty() { break; }
            let at = i.index(b.len());
            match op {
                0 => b[at] = byte,
                1 => { b.remove(at); }
                _ => b.insert(at, [b'|', b'^', b'~', b'\\', b'&', b'\r', b'#', byte][usize::from(byte) % 8]),
            }
        }
        exercise(&b);
    }
}

#[test]
fn the_seed_itself_is_accepted() {
    let m = Message::parse(SEED.as_bytes(), None).unwrap();
    interpret(&m, &cfg(), ContentHash::of(b"x")).unwrap();
}
