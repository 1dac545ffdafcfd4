//! Over random event sequences: an accepted stamp never changes afterwards, a refused event
//! changes nothing, and replaying the accepted events gives the same case.

use chrono::{DateTime, Duration, TimeZone, Utc};
use huren_chestpain::{Case, CaseEvent, Milestone, Referral, Source, Stamp};
use proptest::prelude::*;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap()
}

fn opened() -> CaseEvent {
    CaseEvent::Opened {
        id: "c".into(),
        alert: "a".into(),
        institution: "WSY".into(),
        pci_institution: "QZX".into(),
        group: "g".into(),
        patient: "p".into(),
        ecg_report: "blake3:00".into(),
        at: base(),
    }
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Device),
        Just(Source::System),
        Just(Source::Entered),
        Just(Source::Adt)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("x".to_string())
    ]
}

/// An event and the clock (minutes after the base) it is offered at.
fn event() -> impl Strategy<Value = (CaseEvent, i64)> {
    let stamped = (
        0..Milestone::ALL.len(),
        -30i64..60,
        source(),
        prop::option::of(text()),
    )
        .prop_map(|(i, min, source, by)| CaseEvent::Stamped {
            milestone: Milestone::ALL[i],
            stamp: Stamp {
                at: base() + Duration::minutes(min),
                by,
                source,
                recorded_at: base(),
            },
        });
    let referred = (text(), text(), text(), -30i64..60).prop_map(|(by, to, reason, min)| {
        CaseEvent::Referred(Referral {
            by,
            at: base() + Duration::minutes(min),
            to_institution: to,
            reason,
            expected_arrival: None,
            attachments: Vec::new(),
        })
    });
    let cancelled =
        (text(), text(), -30i64..60).prop_map(|(by, reason, min)| CaseEvent::ReferralCancelled {
            by,
            at: base() + Duration::minutes(min),
            reason,
        });
    let e = prop_oneof![
        6 => stamped,
        2 => referred,
        1 => cancelled,
        1 => Just(opened()),
    ];
    (e, -30i64..60)
}

proptest! {
    #[test]
    fn stamps_are_immutable_and_replay_agrees(events in prop::collection::vec(event(), 0..40)) {
        let mut accepted = vec![opened()];
        let mut case = Case::replay(&accepted).unwrap();
        for (e, now) in &events {
            let now = base() + Duration::minutes(*now);
            match case.apply(e, now) {
                Ok(next) => {
                    for (m, s) in &case.stamps {
                        prop_assert_eq!(next.stamps.get(m), Some(s), "stamp of {} changed", m);
                    }
                    if case.is_duplicate(e) {
                        prop_assert_eq!(&next, &case);
                    }
                    accepted.push(e.clone());
                    case = next;
                }
                Err(_) => {
                    // `apply` takes `&self`: a refusal cannot have changed the case; the
                    // event is simply not recorded.
                }
            }
            let replayed = Case::replay(&accepted);
            prop_assert_eq!(replayed.as_ref(), Ok(&case));
        }
    }
}
