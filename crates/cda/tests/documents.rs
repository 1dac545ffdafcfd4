//! Documents from the project's fixtures: golden bytes (`HUREN_REGENERATE_CDA=1` rewrites
//! `fixtures/cda/`), the CDA R2 schema (xmllint), the template rules and their failing
//! examples, and the header's conditional parts.

use std::path::{Path, PathBuf};
use std::process::Command;

use huren_cda::{document, rules, CdaContext, Custodian, Replaced};
use huren_model::{ContentHash, Report};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const CREATED: &str = "2026-01-02T03:04:05+08:00";

/// The first lab report of the multi-OBR Chinese ORU fixture, as the HL7 adapter makes it.
fn lab_report() -> Report {
    let text =
        std::fs::read_to_string(repo().join("fixtures/hl7/oru_multi_obr_cn_utf8.expected.json"))
            .expect("fixture");
    let v: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    serde_json::from_value(v[0]["content"]["lab"][0].clone()).expect("a report")
}

/// The Chinese-patient aECG fixture, as the ECG adapter makes it (fixed receive time).
fn ecg_report() -> Report {
    let bytes = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).expect("fixture");
    let parsed = huren_ecg::parse(&bytes, &huren_ecg::ParseOptions::default()).expect("parses");
    huren_ecg::to_report(
        &parsed,
        "FX-ZX",
        ContentHash::of(&bytes),
        ContentHash::of(&parsed.waveform.to_blob()),
        "2025-06-24T10:00:00+08:00",
    )
}

fn ctx(r: &Report) -> CdaContext {
    let hash = ContentHash::of(&r.to_canonical_json().expect("canonical"));
    let mut c = CdaContext::new(hash, 1, CREATED, &r.source.institution);
    c.custodian = Custodian {
        code: r.source.institution.clone(),
        name: Some("示例区中心医院".into()),
        institution: r.source.institution.clone(),
    };
    c
}

/// The Chinese SR fixture as the imaging path makes its study report (one instance).
fn imaging_report() -> Report {
    let bytes = std::fs::read(repo().join("fixtures/dicom/sr_chinese.dcm")).expect("fixture");
    let inst = huren_dicom::parse_file(&bytes).expect("parses");
    let body = huren_dicom::study::merge(None, &inst, huren_dicom::study::Change::New);
    huren_dicom::study::report(
        body,
        &huren_dicom::study::Context {
            institution: "FX-ZX",
            application: Some("PACS"),
            utc_offset: "+08:00",
        },
        ContentHash::of(&bytes),
        None,
        true,
    )
}

fn docs() -> Vec<(&'static str, String)> {
    let lab = lab_report();
    let ecg = ecg_report();
    let img = imaging_report();
    vec![
        (
            "lab-oru_multi_obr_cn_utf8.xml",
            document(&lab, &ctx(&lab)).expect("lab document"),
        ),
        (
            "ecg-aecg-zh-patient.xml",
            document(&ecg, &ctx(&ecg)).expect("ECG document"),
        ),
        (
            "imaging-sr_chinese.xml",
            document(&img, &ctx(&img)).expect("imaging document"),
        ),
    ]
}

#[test]
fn golden_documents() {
    let dir = repo().join("fixtures/cda");
    let regen = std::env::var_os("HUREN_REGENERATE_CDA").is_some();
    for (name, doc) in docs() {
        let path = dir.join(name);
        if regen {
            std::fs::create_dir_all(&dir).expect("fixtures/cda");
            std::fs::write(&path, &doc).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (HUREN_REGENERATE_CDA=1 writes it)", path.display())
        });
        assert!(
            want == doc,
            "{name} differs from its golden copy (HUREN_REGENERATE_CDA=1 rewrites it)"
        );
    }
}

/// The CDA R2 schema's directory: `HUREN_CDA_SCHEMA`, else `$HUREN_THIRD_PARTY/../standards/cda-r2`.
/// `None` (skip) outside CI; a failure under `CI=true`.
fn schema() -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let dir = std::env::var_os("HUREN_CDA_SCHEMA")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HUREN_THIRD_PARTY")
                .map(|t| PathBuf::from(t).join("../standards/cda-r2"))
        });
    let xsd = dir.map(|d| d.join("infrastructure/cda/CDA.xsd"));
    let have_xmllint = Command::new("xmllint").arg("--version").output().is_ok();
    match xsd {
        Some(x) if x.is_file() && have_xmllint => Some(x),
        other => {
            let why = format!(
                "no CDA schema check: schema {:?}, xmllint {}",
                other,
                if have_xmllint {
                    "found"
                } else {
                    "missing (apt-get install libxml2-utils)"
                }
            );
            assert!(!ci, "{why}");
            eprintln!("{why}");
            None
        }
    }
}

fn xmllint(xsd: &Path, doc: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, doc).map_err(|e| e.to_string())?;
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd)
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn documents_validate_against_the_cda_schema() {
    let Some(xsd) = schema() else { return };
    let lab = lab_report();
    let mut corrected = ctx(&lab);
    corrected.version = 2;
    corrected.replaces = Some(Replaced {
        hash: ContentHash::of(b"older"),
        version: 1,
    });
    corrected.include_national_id = true;
    corrected.national_id = Some("110101199001011234".into());
    let mut all = docs();
    all.push(("corrected", document(&lab, &corrected).expect("document")));
    for (name, doc) in all {
        if let Err(e) = xmllint(&xsd, &doc) {
            panic!("{name} is not CDA R2 valid:\n{e}");
        }
        // And a broken one is refused: the check can fail.
    }
    let bad = docs()[0].1.replace(
        "<realmCode code=\"CN\"/>",
        "<realmCode code=\"CN\"/><bogus/>",
    );
    assert!(
        xmllint(&xsd, &bad).is_err(),
        "xmllint accepted an unknown element"
    );
}

#[test]
fn documents_pass_the_template_rules() {
    for (name, doc) in docs() {
        let v = rules::check(&doc);
        assert!(v.is_empty(), "{name}: {v:?}");
    }
}

/// Each rule with a failing example: a good document, mutated.
#[test]
fn each_rule_has_a_failing_example() {
    let all = docs();
    let (lab, ecg) = (&all[0].1, &all[1].1);
    let cases: Vec<(&str, String, &str)> = vec![
        ("parse", lab.replace("</ClinicalDocument>", ""), "lab"),
        (
            "header.realm",
            lab.replace("<realmCode code=\"CN\"/>", "<realmCode code=\"US\"/>"),
            "lab",
        ),
        (
            "header.template",
            lab.replace("2.16.156.10011.2.1.1.27", "2.16.156.10011.2.1.1.99"),
            "lab",
        ),
        (
            "header.code",
            lab.replace("code=\"C0007\"", "code=\"C0006\""),
            "lab",
        ),
        (
            "header.code",
            ecg.replace("codeSystem=\"2.16.156.10011.2.4\"", "codeSystem=\"1.2.3\""),
            "ecg",
        ),
        (
            "header.id",
            lab.replacen(
                "<id root=\"2.16.156.10011.1.1\" extension=",
                "<id root=\"1.2.3\" extension=",
                1,
            ),
            "lab",
        ),
        (
            "header.custodian",
            {
                let at = lab
                    .find("<representedCustodianOrganization")
                    .expect("custodian");
                let mut s = lab.clone();
                let tail = s.split_off(at);
                s + &tail.replacen("2.16.156.10011.1.5", "2.16.156.10011.1.9", 1)
            },
            "lab",
        ),
        (
            "header.national-id",
            lab.replace(
                "<custodian typeCode=\"CST\">",
                "<custodian typeCode=\"CST\"><id root=\"2.16.156.10011.1.3\" extension=\"X\"/>",
            ),
            "lab",
        ),
        (
            "entry.de-code",
            lab.replace("DE04.30.019.00", "DE4.30.19"),
            "lab",
        ),
        (
            "entry.value-type",
            lab.replacen("xsi:type=\"PQ\" value=\"", "xsi:type=\"ST\" value=\"", 1),
            "lab",
        ),
        (
            "entry.value-type",
            {
                let at = lab.find("xsi:type=\"PQ\" value=\"").expect("a PQ") + 21;
                format!("{}x{}", &lab[..at], &lab[at..])
            },
            "lab",
        ),
        ("body.sections", lab.replace("30954-2", "00000-0"), "lab"),
        (
            "body.sections",
            lab.replace("DE04.50.130.00", "DE04.50.139.00"),
            "lab",
        ),
        (
            "body.sections",
            ecg.replace("DE04.50.132.00", "DE04.50.139.00"),
            "ecg",
        ),
    ];
    for (rule, doc, what) in cases {
        let v = rules::check(&doc);
        assert!(
            v.iter().any(|x| x.rule == rule),
            "the {what} mutation for {rule} was not caught: {v:?}"
        );
    }
}

#[test]
fn national_id_only_when_allowed_and_carried() {
    let lab = lab_report();
    assert!(
        lab.patient.national_id_key.is_some(),
        "the fixture carries one"
    );
    let mut c = ctx(&lab);
    c.national_id = Some("110101199001011234".into());
    let off = document(&lab, &c).expect("document");
    assert!(
        !off.contains("2.16.156.10011.1.3\""),
        "written without permission"
    );
    c.include_national_id = true;
    let on = document(&lab, &c).expect("document");
    assert!(on.contains("<id root=\"2.16.156.10011.1.3\" extension=\"110101199001011234\"/>"));
    let mut no_key = lab.clone();
    no_key.patient.national_id_key = None;
    let none = document(&no_key, &c).expect("document");
    assert!(
        !none.contains("2.16.156.10011.1.3\""),
        "written though the report carried none"
    );
}

#[test]
fn corrected_version_names_the_replaced_one() {
    let lab = lab_report();
    let mut c = ctx(&lab);
    let old = ContentHash::of(b"v1");
    c.version = 2;
    c.replaces = Some(Replaced {
        hash: old,
        version: 1,
    });
    let doc = document(&lab, &c).expect("document");
    assert!(doc.contains("<relatedDocument typeCode=\"RPLC\">"));
    assert!(doc.contains(&format!("extension=\"{}\"", old.hex())));
    assert!(doc.contains("<versionNumber value=\"2\"/>"));
    assert!(!document(&lab, &ctx(&lab))
        .expect("document")
        .contains("relatedDocument"));
}

#[test]
fn wrong_kind_and_escaping() {
    let lab = lab_report();
    let ecg = ecg_report();
    assert!(huren_cda::exam_document(&lab, &ctx(&lab)).is_err());
    assert!(huren_cda::lab_document(&ecg, &ctx(&ecg)).is_err());
    let mut evil = lab.clone();
    evil.patient.name = Some("<script>&\"".into());
    let doc = document(&evil, &ctx(&evil)).expect("document");
    assert!(
        doc.contains("<name>&lt;script&gt;&amp;&quot;</name>"),
        "{doc}"
    );
    assert!(rules::check(&doc).is_empty());
}
