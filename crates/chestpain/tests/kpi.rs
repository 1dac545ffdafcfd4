//! The KPI arithmetic against a hand-made set of cases whose answers were computed by hand.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use huren_chestpain::{
    report, Case, CaseEvent, Kpi, KpiReport, Milestone, Source, Stamp, Stats, Thresholds,
    NO_RESPONDER,
};

use Milestone::*;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// A case opened at `opened` with the stamps given (`by` only on the acknowledgement).
fn case(
    id: &str,
    institution: &str,
    opened: DateTime<Utc>,
    stamps: &[(Milestone, DateTime<Utc>)],
    responder: Option<&str>,
) -> Case {
    let mut events = vec![CaseEvent::Opened {
        id: id.into(),
        alert: format!("alert-{id}"),
        institution: institution.into(),
        pci_institution: "QZX".into(),
        group: "qzx-pci".into(),
        patient: format!("nid:{id}"),
        ecg_report: "blake3:00".into(),
        at: opened,
    }];
    for &(m, t) in stamps {
        let source = match m {
            EcgAcquired => Source::Device,
            m if m.entered() => Source::Entered,
            _ => Source::System,
        };
        let by = match (m, source) {
            (AlertAcknowledged, _) => responder.map(str::to_string),
            (_, Source::Entered) => Some("nurse".to_string()),
            _ => None,
        };
        events.push(CaseEvent::Stamped {
            milestone: m,
            stamp: Stamp {
                at: t,
                by,
                source,
                recorded_at: t,
            },
        });
    }
    Case::replay(&events).expect("a valid hand-made case")
}

/// The hand-made set. Minutes after the hour; intervals in seconds in the comments.
fn cases() -> Vec<Case> {
    vec![
        // A, WSY, October: fmc→ecg 6 min = 360; ecg→dx 02:06→02:14 = 480;
        // alert→ack 02:07→02:15 = 480 (dr.li); DIDO 01:55→02:40 = 2700.
        case(
            "A",
            "WSY",
            at(2026, 10, 10, 2, 7),
            &[
                (FirstMedicalContact, at(2026, 10, 10, 2, 0)),
                (EcgAcquired, at(2026, 10, 10, 2, 6)),
                (EcgReceived, at(2026, 10, 10, 2, 7)),
                (AlertRaised, at(2026, 10, 10, 2, 7)),
                (Diagnosis, at(2026, 10, 10, 2, 14)),
                (AlertAcknowledged, at(2026, 10, 10, 2, 15)),
                (DoorIn, at(2026, 10, 10, 1, 55)),
                (DoorOut, at(2026, 10, 10, 2, 40)),
            ],
            Some("dr.li"),
        ),
        // B, WSY, October: every threshold hit exactly (counts as within):
        // fmc→ecg 10:00→10:10 = 600; alert→ack 10:11→10:21 = 600; DIDO 09:58→10:28 = 1800;
        // ecg→dx 10:10→10:25 = 900.
        case(
            "B",
            "WSY",
            at(2026, 10, 20, 10, 11),
            &[
                (FirstMedicalContact, at(2026, 10, 20, 10, 0)),
                (EcgAcquired, at(2026, 10, 20, 10, 10)),
                (EcgReceived, at(2026, 10, 20, 10, 11)),
                (AlertRaised, at(2026, 10, 20, 10, 11)),
                (AlertAcknowledged, at(2026, 10, 20, 10, 21)),
                (Diagnosis, at(2026, 10, 20, 10, 25)),
                (DoorIn, at(2026, 10, 20, 9, 58)),
                (DoorOut, at(2026, 10, 20, 10, 28)),
            ],
            Some("dr.li"),
        ),
        // C, HDZ: index 2026-10-31T17:00Z = 2026-11-01 01:00 in Shanghai → November.
        // fmc→ecg 240; ecg→dx 17:04→17:09 = 300; alert→ack 17:05→17:17 = 720 (dr.wang);
        // DIDO 16:58→17:20 = 1320.
        case(
            "C",
            "HDZ",
            at(2026, 10, 31, 17, 5),
            &[
                (FirstMedicalContact, at(2026, 10, 31, 17, 0)),
                (EcgAcquired, at(2026, 10, 31, 17, 4)),
                (EcgReceived, at(2026, 10, 31, 17, 5)),
                (AlertRaised, at(2026, 10, 31, 17, 5)),
                (Diagnosis, at(2026, 10, 31, 17, 9)),
                (AlertAcknowledged, at(2026, 10, 31, 17, 17)),
                (DoorIn, at(2026, 10, 31, 16, 58)),
                (DoorOut, at(2026, 10, 31, 17, 20)),
            ],
            Some("dr.wang"),
        ),
        // D, HDZ, November: no device time (first ECG = receipt 03:12), never acknowledged,
        // no door stamps. fmc→ecg 03:00→03:12 = 720; ecg→dx 03:12→03:20 = 480;
        // alert→ack missing; DIDO missing.
        case(
            "D",
            "HDZ",
            at(2026, 11, 5, 3, 12),
            &[
                (FirstMedicalContact, at(2026, 11, 5, 3, 0)),
                (EcgReceived, at(2026, 11, 5, 3, 12)),
                (AlertRaised, at(2026, 11, 5, 3, 12)),
                (Diagnosis, at(2026, 11, 5, 3, 20)),
            ],
            None,
        ),
        // E, WSY, November: the cart clock is behind — acquired 05:50 before fmc 06:00, so
        // fmc→ecg = −600: inconsistent. ecg→dx 05:50→06:05 = 900; alert→ack 06:03→06:08 =
        // 300 (dr.wang); DIDO 05:45→06:50 = 3900.
        case(
            "E",
            "WSY",
            at(2026, 11, 10, 6, 3),
            &[
                (FirstMedicalContact, at(2026, 11, 10, 6, 0)),
                (EcgAcquired, at(2026, 11, 10, 5, 50)),
                (EcgReceived, at(2026, 11, 10, 6, 3)),
                (AlertRaised, at(2026, 11, 10, 6, 3)),
                (Diagnosis, at(2026, 11, 10, 6, 5)),
                (AlertAcknowledged, at(2026, 11, 10, 6, 8)),
                (DoorIn, at(2026, 11, 10, 5, 45)),
                (DoorOut, at(2026, 11, 10, 6, 50)),
            ],
            Some("dr.wang"),
        ),
        // F, HDZ, November: fmc→ecg 120; ecg→dx 12:02→12:04 = 120; alert→ack 12:03→12:06 =
        // 180 (dr.li); DIDO 11:50→12:15 = 1500.
        case(
            "F",
            "HDZ",
            at(2026, 11, 20, 12, 3),
            &[
                (FirstMedicalContact, at(2026, 11, 20, 12, 0)),
                (EcgAcquired, at(2026, 11, 20, 12, 2)),
                (EcgReceived, at(2026, 11, 20, 12, 3)),
                (AlertRaised, at(2026, 11, 20, 12, 3)),
                (Diagnosis, at(2026, 11, 20, 12, 4)),
                (AlertAcknowledged, at(2026, 11, 20, 12, 6)),
                (DoorIn, at(2026, 11, 20, 11, 50)),
                (DoorOut, at(2026, 11, 20, 12, 15)),
            ],
            Some("dr.li"),
        ),
        // G, WSY: index 2026-11-30T16:00Z = 2026-12-01 00:00 Shanghai = `to`: excluded.
        case(
            "G",
            "WSY",
            at(2026, 11, 30, 16, 5),
            &[
                (FirstMedicalContact, at(2026, 11, 30, 16, 0)),
                (EcgAcquired, at(2026, 11, 30, 16, 1)),
            ],
            None,
        ),
        // H, WSY: index 2026-09-30T15:59Z = 2026-09-30 23:59 Shanghai, before `from`: excluded.
        case(
            "H",
            "WSY",
            at(2026, 9, 30, 16, 10),
            &[
                (FirstMedicalContact, at(2026, 9, 30, 15, 59)),
                (EcgAcquired, at(2026, 9, 30, 16, 2)),
            ],
            None,
        ),
    ]
}

/// October and November 2026 in Shanghai: [2026-10-01 00:00+08, 2026-12-01 00:00+08).
fn the_report() -> KpiReport {
    report(
        &cases(),
        at(2026, 9, 30, 16, 0),
        at(2026, 11, 30, 16, 0),
        Shanghai,
        &Thresholds::default(),
    )
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[allow(clippy::too_many_arguments)]
fn check(
    s: &Stats,
    n: usize,
    missing: usize,
    inconsistent: usize,
    mean: f64,
    median: f64,
    p90: f64,
    within: usize,
    share: f64,
) {
    assert_eq!(
        (s.n, s.missing, s.inconsistent, s.within),
        (n, missing, inconsistent, within),
        "{s:?}"
    );
    assert!(close(s.mean_s, mean), "mean {s:?}");
    assert!(close(s.median_s, median), "median {s:?}");
    assert!(close(s.p90_s, p90), "p90 {s:?}");
    assert!(close(s.within_share, share), "share {s:?}");
}

#[test]
fn whole_range() {
    let r = the_report();
    assert_eq!(r.total.cases, 6, "A–F; G and H fall outside [from, to)");
    assert_eq!(r.time_zone, "Asia/Shanghai");
    let k = |k: Kpi| &r.total.kpis[&k].overall;

    // ecg→dx: 480 900 300 480 900 120 → sorted 120 300 480 480 900 900.
    // mean 3180/6 = 530; median (480+480)/2 = 480; p90 rank ⌈5.4⌉ = 6 → 900;
    // within ≤ 600: 4 of 6.
    check(
        k(Kpi::EcgToDiagnosis),
        6,
        0,
        0,
        530.0,
        480.0,
        900.0,
        4,
        4.0 / 6.0,
    );

    // alert→ack: 480 600 720 — 300 180 (D missing) → sorted 180 300 480 600 720.
    // mean 2280/5 = 456; median 480; p90 rank ⌈4.5⌉ = 5 → 720; within: 4 (600 is within).
    check(k(Kpi::AlertToAck), 5, 1, 0, 456.0, 480.0, 720.0, 4, 0.8);

    // fmc→ecg: 360 600 240 720 (D by receipt) −600 (E, inconsistent) 120
    // → sorted 120 240 360 600 720. mean 2040/5 = 408; median 360; p90 720; within 4.
    check(k(Kpi::FmcToEcg), 5, 0, 1, 408.0, 360.0, 720.0, 4, 0.8);

    // DIDO: 2700 1800 1320 — 3900 1500 (D missing) → sorted 1320 1500 1800 2700 3900.
    // mean 11220/5 = 2244; median 1800; p90 3900; within ≤ 1800: 3 (1800 is within).
    check(
        k(Kpi::DoorInDoorOut),
        5,
        1,
        0,
        2244.0,
        1800.0,
        3900.0,
        3,
        0.6,
    );
}

#[test]
fn months_cut_in_shanghai() {
    let r = the_report();
    let months: Vec<&str> = r.months.keys().map(String::as_str).collect();
    assert_eq!(months, ["2026-10", "2026-11"]);
    assert_eq!(r.months["2026-10"].cases, 2, "A, B");
    assert_eq!(
        r.months["2026-11"].cases, 4,
        "C (17:00Z on 31 Oct), D, E, F"
    );

    // October ecg→dx: 480 900 → mean 690, median (480+900)/2 = 690, p90 rank ⌈1.8⌉ = 2 →
    // 900, within 1 of 2.
    let oct = &r.months["2026-10"].kpis[&Kpi::EcgToDiagnosis].overall;
    check(oct, 2, 0, 0, 690.0, 690.0, 900.0, 1, 0.5);

    // November ecg→dx: 300 480 900 120 → sorted 120 300 480 900; mean 1800/4 = 450;
    // median (300+480)/2 = 390; p90 rank ⌈3.6⌉ = 4 → 900; within 3 of 4.
    let nov = &r.months["2026-11"].kpis[&Kpi::EcgToDiagnosis].overall;
    check(nov, 4, 0, 0, 450.0, 390.0, 900.0, 3, 0.75);
}

#[test]
fn by_institution_and_responder() {
    let r = the_report();
    let a2a = &r.total.kpis[&Kpi::AlertToAck];

    // WSY: A 480, B 600, E 300 → sorted 300 480 600; mean 1380/3 = 460; median 480;
    // p90 rank ⌈2.7⌉ = 3 → 600; within 3.
    check(
        &a2a.by_institution["WSY"],
        3,
        0,
        0,
        460.0,
        480.0,
        600.0,
        3,
        1.0,
    );
    // HDZ: C 720, D missing, F 180 → mean 450; median (180+720)/2 = 450; p90 rank 2 → 720;
    // within 1 of 2.
    check(
        &a2a.by_institution["HDZ"],
        2,
        1,
        0,
        450.0,
        450.0,
        720.0,
        1,
        0.5,
    );

    // dr.li: A 480, B 600, F 180 → sorted 180 480 600; mean 1260/3 = 420; median 480;
    // p90 600; within 3.
    check(
        &a2a.by_responder["dr.li"],
        3,
        0,
        0,
        420.0,
        480.0,
        600.0,
        3,
        1.0,
    );
    // dr.wang: C 720, E 300 → mean 510; median 510; p90 720; within 1 of 2.
    check(
        &a2a.by_responder["dr.wang"],
        2,
        0,
        0,
        510.0,
        510.0,
        720.0,
        1,
        0.5,
    );
    // D was never acknowledged: under NO_RESPONDER, missing, no statistics.
    let none = &a2a.by_responder[NO_RESPONDER];
    assert_eq!((none.n, none.missing), (0, 1));
    assert_eq!(
        (none.mean_s, none.median_s, none.p90_s, none.within_share),
        (None, None, None, None)
    );
    assert_eq!(a2a.by_responder.len(), 3);
}

#[test]
fn report_serializes_with_stable_keys() {
    let j = serde_json::to_value(the_report()).unwrap();
    assert_eq!(
        j["months"]["2026-11"]["kpis"]["alert_to_ack"]["by_responder"][NO_RESPONDER]["missing"],
        1
    );
    assert_eq!(j["thresholds"]["door_in_door_out_min"], 30);
    let kpis: Vec<&String> = j["total"]["kpis"].as_object().unwrap().keys().collect();
    assert_eq!(kpis.len(), 4);
}

#[test]
fn stats_edge_cases() {
    let empty = Stats::of([], chrono::Duration::minutes(10));
    assert_eq!(empty.n, 0);
    assert_eq!(empty.mean_s, None);
    assert_eq!(empty.within_share, None);
    // One value: mean = median = p90 = it.
    let one = Stats::of(
        [Some(Ok(chrono::Duration::seconds(61)))],
        chrono::Duration::minutes(1),
    );
    check(&one, 1, 0, 0, 61.0, 61.0, 61.0, 0, 0.0);
    // Ten values 1..=10 s: p90 rank ⌈9⌉ = 9 → 9 s; median (5+6)/2 = 5.5.
    let ten = Stats::of(
        (1..=10).map(|s| Some(Ok(chrono::Duration::seconds(s)))),
        chrono::Duration::seconds(5),
    );
    check(&ten, 10, 0, 0, 5.5, 5.5, 9.0, 5, 0.5);
}

#[test]
fn thresholds_default_parse_and_validate() {
    let t: Thresholds = serde_json::from_str("{}").unwrap();
    assert_eq!(t, Thresholds::default());
    assert_eq!(
        [10, 10, 10, 30],
        Kpi::ALL.map(|k| t.minutes(k)),
        "defaults in Kpi::ALL order"
    );
    assert!(t.validate().is_ok());
    let t: Thresholds = serde_json::from_str(r#"{"fmc_to_ecg_min": 0}"#).unwrap();
    assert_eq!(t.validate().unwrap_err().0, "fmc_to_ecg_min");
    assert!(serde_json::from_str::<Thresholds>(r#"{"fmc_to_ecg": 5}"#).is_err());
    assert!(serde_json::from_str::<Thresholds>(r#"{"alert_to_ack_min": -1}"#).is_err());
}

#[test]
fn kpi_names() {
    for k in Kpi::ALL {
        assert_eq!(
            serde_json::to_value(k).unwrap(),
            serde_json::Value::from(k.as_str())
        );
        assert!(!k.label_zh().is_empty());
    }
}
