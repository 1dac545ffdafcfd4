//! Bounded property tests ("fuzz" in CI): no input panics the XLI decoder or any adapter,
//! and every failure is an `EcgError`. The cargo-fuzz targets in `fuzz/` run the same
//! entry points without bounds.

use huren_ecg::{parse, xli, ParseOptions};
use proptest::prelude::*;

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/ecg")
            .join(name),
    )
    .unwrap()
}

/// Mutates a valid document: overwrite, delete or duplicate a byte range.
fn mutate(base: &[u8], ops: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(pos, op, v) in ops {
        if b.is_empty() {
            break;
        }
        let i = pos % b.len();
        match op % 4 {
            0 => b[i] = v,
            1 => {
                let end = (i + usize::from(v)).min(b.len());
                b.drain(i..end);
            }
            2 => {
                let end = (i + usize::from(v)).min(b.len());
                let chunk = b[i..end].to_vec();
                b.splice(i..i, chunk);
            }
            _ => b.truncate(i),
        }
    }
    b
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn xli_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = xli::decode(&data);
    }

    #[test]
    fn xli_round_trips(leads in proptest::collection::vec(
        proptest::collection::vec(-3000i32..3000, 3..400), 1..4)) {
        prop_assert_eq!(xli::decode(&xli::encode(&leads)).unwrap(), leads);
    }

    #[test]
    fn xli_survives_damage(ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        let good = xli::encode(&vec![vec![1, 5, 9, 4, -3, 200, 180, 0, 0, 7]; 3]);
        let _ = xli::decode(&mutate(&good, &ops));
    }

    #[test]
    fn aecg_adapter_never_panics(ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
        let _ = parse(&mutate(&fixture("aecg-zh-patient.xml"), &ops), &ParseOptions::default());
    }

    #[test]
    fn muse_adapter_never_panics(ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
        let _ = parse(&mutate(&fixture("muse-zh-crc.xml"), &ops), &ParseOptions::default());
    }

    #[test]
    fn philips_adapter_never_panics(ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
        let _ = parse(&mutate(&fixture("philips-xli-1.04.xml"), &ops), &ParseOptions::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&data, &ParseOptions::default());
        let _ = huren_model::ecg::Waveform::from_blob(&data);
    }

    #[test]
    fn dicom_prefixed_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        b.extend_from_slice(&data);
        let _ = parse(&b, &ParseOptions::default());
    }
}

#[test]
fn xml_bombs_and_external_entities_are_refused() {
    let o = ParseOptions::default();
    let laughs = concat!(
        "<?xml version=\"1.0\"?><!DOCTYPE RestingECG [",
        "<!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">",
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">",
        "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">",
        "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">",
        "<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">",
        "]><RestingECG><PatientDemographics><PatientID>&e;</PatientID></PatientDemographics></RestingECG>"
    );
    assert!(parse(laughs.as_bytes(), &o).is_err());
    let ext = "<?xml version=\"1.0\"?><!DOCTYPE RestingECG [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><RestingECG><PatientDemographics><PatientID>&x;</PatientID></PatientDemographics></RestingECG>";
    let e = parse(ext.as_bytes(), &o).unwrap_err().to_string();
    assert!(!e.contains("root:"), "{e}");
    let small = ParseOptions {
        node_limit: 50,
        ..ParseOptions::default()
    };
    let e = parse(&fixture("muse-zh-crc.xml"), &small).unwrap_err();
    assert!(matches!(e, huren_ecg::EcgError::Xml { .. }), "{e}");
}

#[test]
fn errors_name_the_element_and_line() {
    let b = String::from_utf8(fixture("muse-zh-crc.xml")).unwrap();
    let bad = b.replacen("<LeadID>V1</LeadID>", "", 1);
    let e = parse(bad.as_bytes(), &ParseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/RestingECG/Waveform[1]/LeadData[3] (line "),
        "{e}"
    );
    assert!(e.ends_with("no LeadID"), "{e}");
}

/// Issue 16, finding 2: internal entities that each stay under roxmltree's per-reference
/// limit (255 references below one reference, depth 10) still expand quadratically: one
/// 3 KB entity referenced 250 times by another (750 KB), that one referenced 400 times
/// from the body (roxmltree allows any number of references at depth 0): 300 MB out of
/// 6 KB of input (an 18.6 KB upload took 3.0 GB and 6.8 s). Refused before parsing,
/// quickly, naming the reason.
#[test]
fn quadratic_entity_expansion_is_refused_quickly() {
    let mut x = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE AnnotatedECG [\n<!ENTITY a \"");
    x.push_str(&"lol".repeat(1000));
    x.push_str("\">\n<!ENTITY b \"");
    x.push_str(&"&a;".repeat(250));
    x.push_str("\">\n]>\n<AnnotatedECG xmlns=\"urn:hl7-org:v3\"><id root=\"x\"/><text>");
    x.push_str(&"&b;".repeat(400));
    x.push_str("</text></AnnotatedECG>\n");
    assert!(x.len() < 20_000, "{}", x.len());
    let start = std::time::Instant::now();
    let e = parse(x.as_bytes(), &ParseOptions::default()).unwrap_err();
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    let msg = e.to_string();
    assert!(matches!(e, huren_ecg::EcgError::Xml { .. }), "{msg}");
    assert!(msg.contains("ENTITY"), "{msg}");
    assert!(msg.len() < 400, "{msg}");
}
