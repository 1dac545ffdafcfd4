//! ADT A01 / A03 / A04 → a visit event with its time (chest-pain door times, issue 18).

use huren_hl7::{interpret, Content, Message, RejectKind, SenderConfig, VisitEvent};
use huren_model::ContentHash;

fn cfg() -> SenderConfig {
    SenderConfig {
        institution: "FX-SQ01".into(),
        national_id_secret: "s".into(),
        ..SenderConfig::default()
    }
}

fn adt(event: &str, evn: &str, pv1_44: &str, pv1_45: &str, pid3: &str) -> Vec<u8> {
    // PV1-1 … PV1-45: set ID, class, location, visit number (PV1-19), the two times.
    let mut pv1 = vec![""; 46];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "E";
    pv1[3] = "急诊";
    pv1[19] = "V1";
    pv1[44] = pv1_44;
    pv1[45] = pv1_45;
    let pv1 = pv1.join("|");
    format!(
        "MSH|^~\\&|HIS|FX-SQ01|HUREN|REGION|20260101090000||ADT^{event}^ADT_A01|C1|P|2.5.1\r\
EVN|{event}|{evn}\r\
PID|1||{pid3}||王^芳\r\
{pv1}\r"
    )
    .into_bytes()
}

fn run(b: &[u8]) -> Result<huren_hl7::Interpreted, huren_hl7::Rejection> {
    let m = Message::parse(b, None).unwrap();
    interpret(&m, &cfg(), ContentHash::of(b))
}

fn visit(b: &[u8]) -> huren_hl7::Visit {
    match run(b).unwrap().content {
        Content::Visit(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_time_is_pv1_then_evn_6_then_evn_2_in_the_senders_zone() {
    let v = visit(&adt(
        "A01",
        "20260101085900",
        "20260101084500",
        "",
        "P1^^^FX-SQ01^MR",
    ));
    assert_eq!(v.event, VisitEvent::Admitted);
    assert_eq!(
        (v.at.as_str(), v.at_field),
        ("2026-01-01T08:45:00+08:00", "PV1-44")
    );
    assert_eq!(v.patient.local_id, "P1");
    // A03 takes PV1-45, not PV1-44; an explicit offset is kept.
    let v = visit(&adt(
        "A03",
        "",
        "20260101084500",
        "20260101093000+0000",
        "P1",
    ));
    assert_eq!(v.event, VisitEvent::Discharged);
    assert_eq!(
        (v.at.as_str(), v.at_field),
        ("2026-01-01T09:30:00+00:00", "PV1-45")
    );
    // EVN-6, else EVN-2.
    let b = String::from_utf8(adt("A04", "20260101085900", "", "", "P1")).unwrap();
    let with6 = b.replace(
        "EVN|A04|20260101085900",
        "EVN|A04|20260101085900||||202601010850",
    );
    let v = visit(with6.as_bytes());
    assert_eq!(v.event, VisitEvent::Registered);
    assert_eq!(
        (v.at.as_str(), v.at_field),
        ("2026-01-01T08:50:00+08:00", "EVN-6")
    );
    let v = visit(b.as_bytes());
    assert_eq!(
        (v.at.as_str(), v.at_field),
        ("2026-01-01T08:59:00+08:00", "EVN-2")
    );
}

#[test]
fn no_patient_or_no_usable_time_is_an_error_at_its_field() {
    let e = run(&adt("A01", "", "20260101084500", "", "")).unwrap_err();
    assert_eq!(e.kind, RejectKind::Error);
    assert_eq!(e.diagnostics[0].location, "PID[1]-3", "{e:?}");
    let e = run(&adt("A01", "", "2026013", "", "P1")).unwrap_err();
    assert_eq!(e.kind, RejectKind::Error);
    assert_eq!(e.diagnostics[0].location, "PV1[1]-44", "{e:?}");
    assert_eq!(e.diagnostics[0].code, 102);
    let e = run(&adt("A03", "20260101", "", "", "P1")).unwrap_err();
    assert_eq!(e.diagnostics[0].location, "EVN[1]-2", "{e:?}");
    assert!(e.diagnostics[0].message.contains("no time of day"), "{e:?}");
    let e = run(&adt("A03", "", "", "", "P1")).unwrap_err();
    assert_eq!(e.diagnostics[0].location, "PV1[1]-45", "{e:?}");
    assert_eq!(e.diagnostics[0].code, 101);
}

#[test]
fn a08_is_still_an_update() {
    let b = String::from_utf8(adt("A01", "", "20260101084500", "", "P1")).unwrap();
    let b = b.replace("ADT^A01", "ADT^A08");
    assert!(matches!(
        run(b.as_bytes()).unwrap().content,
        Content::PatientUpdate(_)
    ));
}
