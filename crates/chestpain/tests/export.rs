//! The CCPC export, checked column by column against a hand-made case.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use huren_chestpain::{
    export_columns, export_csv, export_rows, Case, CaseEvent, Milestone, Source, Stamp,
};

fn at(d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, d, h, mi, s).unwrap()
}

fn the_case() -> Case {
    let mut events = vec![CaseEvent::Opened {
        id: "cp-2026-0042".into(),
        alert: "alert-42".into(),
        institution: "WSY".into(),
        pci_institution: "QZX".into(),
        group: "qzx-pci".into(),
        patient: "nid:secret-person-key".into(),
        ecg_report: "blake3:ab".into(),
        at: at(31, 16, 5, 0),
    }];
    // 2026-10-31T15:50:00Z = 2026-10-31 23:50:00 in Shanghai; 16:00Z = 2026-11-01 00:00.
    let stamps = [
        (
            Milestone::SymptomOnset,
            at(31, 15, 20, 0),
            Source::Entered,
            Some("nurse"),
        ),
        (
            Milestone::FirstMedicalContact,
            at(31, 15, 50, 0),
            Source::Entered,
            Some("nurse"),
        ),
        (
            Milestone::EcgAcquired,
            at(31, 15, 58, 30),
            Source::Device,
            None,
        ),
        (
            Milestone::EcgReceived,
            at(31, 16, 5, 0),
            Source::System,
            None,
        ),
        (
            Milestone::AlertRaised,
            at(31, 16, 5, 0),
            Source::System,
            None,
        ),
        (
            Milestone::AlertDelivered,
            at(31, 16, 5, 2),
            Source::System,
            None,
        ),
        (
            Milestone::AlertAcknowledged,
            at(31, 16, 9, 0),
            Source::System,
            Some("dr.li"),
        ),
        (Milestone::Diagnosis, at(31, 16, 8, 0), Source::System, None),
        (Milestone::DoorIn, at(31, 15, 48, 0), Source::Adt, None),
        (
            Milestone::TransferDecision,
            at(31, 16, 10, 0),
            Source::Entered,
            Some("dr.zhao"),
        ),
        (Milestone::DoorOut, at(31, 16, 30, 0), Source::Adt, None),
    ];
    // Not stamped: alert_escalated, cathlab_activation, arrival.
    for (m, t, source, by) in stamps {
        events.push(CaseEvent::Stamped {
            milestone: m,
            stamp: Stamp {
                at: t,
                by: by.map(str::to_string),
                source,
                recorded_at: t,
            },
        });
    }
    Case::replay(&events).unwrap()
}

/// (CSV header, expected cell) in column order.
const EXPECTED: [(&str, &str); 18] = [
    ("病例编号", "cp-2026-0042"),
    ("转出医院", "WSY"),
    ("PCI医院", "QZX"),
    ("确认医师", "dr.li"),
    ("发病时间", "2026-10-31 23:20:00"),
    ("首次医疗接触时间", "2026-10-31 23:50:00"),
    ("首份心电图时间", "2026-10-31 23:58:30"),
    ("远程心电传输时间", "2026-11-01 00:05:00"),
    ("预警发出时间", "2026-11-01 00:05:00"),
    ("预警送达时间", "2026-11-01 00:05:02"),
    ("预警升级时间", ""),
    ("预警确认时间", "2026-11-01 00:09:00"),
    ("心电图诊断时间", "2026-11-01 00:08:00"),
    ("激活导管室时间", ""),
    ("转出医院入门时间", "2026-10-31 23:48:00"),
    ("决定转院时间", "2026-11-01 00:10:00"),
    ("转出医院出门时间", "2026-11-01 00:30:00"),
    ("到达本院大门时间", ""),
];

#[test]
fn csv_column_by_column() {
    let csv_text = export_csv(&[the_case()], Shanghai).unwrap();
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = r.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(headers.len(), EXPECTED.len());
    for (i, (header, cell)) in EXPECTED.iter().enumerate() {
        assert_eq!(&headers[i], *header, "header {i}");
        assert_eq!(&rows[0][i], *cell, "cell {i} ({header})");
    }
    assert!(
        !csv_text.contains("secret-person-key"),
        "no patient identifier"
    );
}

#[test]
fn columns_cover_every_milestone_once_in_order() {
    let cols = export_columns();
    let ms: Vec<Milestone> = cols.iter().filter_map(|c| c.milestone).collect();
    assert_eq!(ms, Milestone::ALL);
    for c in cols {
        if let Some(m) = c.milestone {
            assert_eq!(c.key, m.as_str());
        }
        assert!(!c.note.is_empty());
    }
    let mut headers: Vec<&str> = cols.iter().map(|c| c.ccpc).collect();
    headers.sort();
    headers.dedup();
    assert_eq!(headers.len(), cols.len(), "CSV headers are distinct");
}

#[test]
fn rows_keyed_by_column_key() {
    let rows = export_rows(&[the_case(), the_case()], Shanghai);
    assert_eq!(rows.len(), 2);
    let row = &rows[0];
    assert_eq!(row.len(), export_columns().len());
    for (col, (_, cell)) in export_columns().iter().zip(EXPECTED) {
        assert_eq!(row[col.key], cell, "{}", col.key);
    }
    assert_eq!(row["arrival"], "");
    assert_eq!(row["case_id"], "cp-2026-0042");
}

#[test]
fn empty_export_is_the_header_row() {
    let text = export_csv(&[], Shanghai).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("病例编号,"));
}
