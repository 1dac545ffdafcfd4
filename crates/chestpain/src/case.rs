//! The chest-pain case: its milestones, their stamps, the referral, and the events that make it.
//!
//! A case is the fold of its events ([`Case::replay`]); [`Case::apply`] is the one place a
//! change is allowed or refused, so the store appends an event only after `apply` accepted
//! it. A milestone's timestamp, once stamped, never changes.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How far ahead of `now` a stamp may lie (clock skew between a cart, a phone and huren).
pub const FUTURE_TOLERANCE_SECS: i64 = 5 * 60;

/// A point on the STEMI pathway, in pathway order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    /// 发病: symptom onset (entered).
    SymptomOnset,
    /// 首次医疗接触: first medical contact (entered).
    FirstMedicalContact,
    /// The ECG cart's acquisition time (device).
    EcgAcquired,
    /// huren received the ECG (system).
    EcgReceived,
    /// The STEMI alert was raised (system).
    AlertRaised,
    /// The alert first reached a responder's screen (system).
    AlertDelivered,
    /// The alert's first escalation step (system).
    AlertEscalated,
    /// The alert was acknowledged (system).
    AlertAcknowledged,
    /// 心电图诊断: the ECG was diagnosed — the first of a reader's signature or a
    /// cardiologist's STEMI decision (system; the caller picks the first).
    Diagnosis,
    /// 激活导管室: cath lab activated (entered).
    CathlabActivation,
    /// 到达本院大门: arrival at the sending hospital's door (entered or ADT A01).
    DoorIn,
    /// 决定转运: decision to transfer (entered).
    TransferDecision,
    /// 离开本院大门: left the sending hospital's door (entered or ADT A03).
    DoorOut,
    /// 到达PCI医院: arrival at the PCI hospital (entered or ADT A01 there).
    Arrival,
}

impl Milestone {
    /// All milestones in pathway order.
    pub const ALL: [Milestone; 14] = [
        Milestone::SymptomOnset,
        Milestone::FirstMedicalContact,
        Milestone::EcgAcquired,
        Milestone::EcgReceived,
        Milestone::AlertRaised,
        Milestone::AlertDelivered,
        Milestone::AlertEscalated,
        Milestone::AlertAcknowledged,
        Milestone::Diagnosis,
        Milestone::CathlabActivation,
        Milestone::DoorIn,
        Milestone::TransferDecision,
        Milestone::DoorOut,
        Milestone::Arrival,
    ];

    /// As written in the API and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::SymptomOnset => "symptom_onset",
            Milestone::FirstMedicalContact => "first_medical_contact",
            Milestone::EcgAcquired => "ecg_acquired",
            Milestone::EcgReceived => "ecg_received",
            Milestone::AlertRaised => "alert_raised",
            Milestone::AlertDelivered => "alert_delivered",
            Milestone::AlertEscalated => "alert_escalated",
            Milestone::AlertAcknowledged => "alert_acknowledged",
            Milestone::Diagnosis => "diagnosis",
            Milestone::CathlabActivation => "cathlab_activation",
            Milestone::DoorIn => "door_in",
            Milestone::TransferDecision => "transfer_decision",
            Milestone::DoorOut => "door_out",
            Milestone::Arrival => "arrival",
        }
    }

    /// From its API name.
    pub fn parse(s: &str) -> Option<Milestone> {
        Milestone::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Its Chinese label, as shown to users.
    pub fn label_zh(self) -> &'static str {
        match self {
            Milestone::SymptomOnset => "发病",
            Milestone::FirstMedicalContact => "首次医疗接触",
            Milestone::EcgAcquired => "心电图采集",
            Milestone::EcgReceived => "心电图接收",
            Milestone::AlertRaised => "预警发出",
            Milestone::AlertDelivered => "预警送达",
            Milestone::AlertEscalated => "预警升级",
            Milestone::AlertAcknowledged => "预警确认",
            Milestone::Diagnosis => "心电图诊断",
            Milestone::CathlabActivation => "激活导管室",
            Milestone::DoorIn => "到达本院大门",
            Milestone::TransferDecision => "决定转运",
            Milestone::DoorOut => "离开本院大门",
            Milestone::Arrival => "到达PCI医院",
        }
    }

    /// Whether a user may stamp it with one click (and ADT may stamp it).
    pub fn entered(self) -> bool {
        matches!(
            self,
            Milestone::SymptomOnset
                | Milestone::FirstMedicalContact
                | Milestone::CathlabActivation
                | Milestone::DoorIn
                | Milestone::TransferDecision
                | Milestone::DoorOut
                | Milestone::Arrival
        )
    }
}

impl fmt::Display for Milestone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order constraints: each chain must be non-decreasing in time. A milestone's stamp is
/// checked against every stamped member of its chain, so `door_in ≤ arrival` holds even
/// while `door_out` is missing.
const CHAINS: [&[Milestone]; 2] = [
    &[Milestone::SymptomOnset, Milestone::FirstMedicalContact],
    &[
        Milestone::DoorIn,
        Milestone::TransferDecision,
        Milestone::DoorOut,
        Milestone::Arrival,
    ],
];

/// Where a timestamp came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The device's own clock (the ECG cart).
    Device,
    /// huren's clock (receipt, alert events, signature).
    System,
    /// Typed or clicked by a user.
    Entered,
    /// An HL7 ADT message (A01 admit, A03 discharge).
    Adt,
}

impl Source {
    /// As written in the API and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Device => "device",
            Source::System => "system",
            Source::Entered => "entered",
            Source::Adt => "adt",
        }
    }
}

/// A milestone's timestamp as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// When the milestone happened.
    pub at: DateTime<Utc>,
    /// Who stamped it (principal id); none for device and system stamps.
    pub by: Option<String>,
    /// Where the time came from.
    pub source: Source,
    /// When huren recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// A referral of the patient to the PCI hospital (or elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// Who referred (principal id).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The receiving institution.
    pub to_institution: String,
    /// Why.
    pub reason: String,
    /// When the patient is expected there.
    pub expected_arrival: Option<DateTime<Utc>>,
    /// Reports sent along (content hashes, `blake3:…`).
    pub attachments: Vec<String>,
}

/// A referral withdrawn, with who, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelledReferral {
    /// The referral withdrawn.
    pub referral: Referral,
    /// Who withdrew it (principal id).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// Something that happened to a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CaseEvent {
    /// The case was opened (from a STEMI alert).
    Opened {
        /// The case's identifier.
        id: String,
        /// The alert it was opened from.
        alert: String,
        /// The sending institution (where the patient is).
        institution: String,
        /// The PCI hospital.
        pci_institution: String,
        /// The alert's recipient group.
        group: String,
        /// The person key (opaque).
        patient: String,
        /// The ECG report (`blake3:…`).
        ecg_report: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A milestone was stamped.
    Stamped {
        /// Which.
        milestone: Milestone,
        /// The stamp.
        stamp: Stamp,
    },
    /// The patient was referred.
    Referred(Referral),
    /// The active referral was withdrawn.
    ReferralCancelled {
        /// Principal id.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

/// Why an event does not apply. Nothing changes when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// The first event of a case is not `Opened`, or there are no events.
    #[error("a case begins with its opening")]
    NotOpened,
    /// `Opened` for a case that exists.
    #[error("the case is open already")]
    AlreadyOpened,
    /// The milestone has a different timestamp already; timestamps are immutable.
    #[error("{milestone} is stamped already at {at}")]
    AlreadyStamped {
        /// The milestone.
        milestone: Milestone,
        /// Its recorded time.
        at: DateTime<Utc>,
    },
    /// The time lies more than five minutes ahead of now.
    #[error("{at} lies in the future (now {now})")]
    InFuture {
        /// The time given.
        at: DateTime<Utc>,
        /// The clock at acceptance.
        now: DateTime<Utc>,
    },
    /// The stamp would put two milestones of one chain out of order: `earlier` must not be
    /// after `later`.
    #[error("{earlier} at {earlier_at} would be after {later} at {later_at}")]
    OutOfOrder {
        /// The milestone that must come first.
        earlier: Milestone,
        /// Its time.
        earlier_at: DateTime<Utc>,
        /// The milestone that must come after.
        later: Milestone,
        /// Its time.
        later_at: DateTime<Utc>,
    },
    /// A device or system milestone given as entered or from ADT.
    #[error("{milestone} cannot come from {given}")]
    WrongSource {
        /// The milestone.
        milestone: Milestone,
        /// The source given.
        given: &'static str,
    },
    /// No one named where someone must be (an entered stamp, a referral, a cancellation).
    #[error("the act names no one")]
    NoActor,
    /// A blank reason.
    #[error("a reason is required")]
    EmptyReason,
    /// A referral to no institution.
    #[error("a referral needs the receiving institution")]
    EmptyInstitution,
    /// A referral while one is active.
    #[error("a referral is active already")]
    ReferralActive,
    /// A cancellation with no active referral.
    #[error("there is no active referral")]
    NoReferral,
}

/// A case as its events made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The identifier.
    pub id: String,
    /// The alert it was opened from.
    pub alert: String,
    /// The sending institution.
    pub institution: String,
    /// The PCI hospital.
    pub pci_institution: String,
    /// The alert's recipient group.
    pub group: String,
    /// The person key (opaque).
    pub patient: String,
    /// The ECG report (`blake3:…`).
    pub ecg_report: String,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// The stamped milestones.
    pub stamps: BTreeMap<Milestone, Stamp>,
    /// The active referral.
    pub referral: Option<Referral>,
    /// Referrals withdrawn, oldest first.
    pub cancelled_referrals: Vec<CancelledReferral>,
}

fn actor(by: &str) -> Result<(), CaseError> {
    if by.trim().is_empty() {
        Err(CaseError::NoActor)
    } else {
        Ok(())
    }
}

fn not_future(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), CaseError> {
    if at.signed_duration_since(now) > Duration::seconds(FUTURE_TOLERANCE_SECS) {
        Err(CaseError::InFuture { at, now })
    } else {
        Ok(())
    }
}

impl Case {
    /// The case an `Opened` event opens; [`CaseError::NotOpened`] for any other event.
    pub fn open(e: &CaseEvent) -> Result<Case, CaseError> {
        match e {
            CaseEvent::Opened {
                id,
                alert,
                institution,
                pci_institution,
                group,
                patient,
                ecg_report,
                at,
            } => Ok(Case {
                id: id.clone(),
                alert: alert.clone(),
                institution: institution.clone(),
                pci_institution: pci_institution.clone(),
                group: group.clone(),
                patient: patient.clone(),
                ecg_report: ecg_report.clone(),
                opened_at: *at,
                stamps: BTreeMap::new(),
                referral: None,
                cancelled_referrals: Vec::new(),
            }),
            _ => Err(CaseError::NotOpened),
        }
    }

    /// The case of stored events (the first must be `Opened`); the first refused event's
    /// error. The future check is not repeated: it held against the clock when each event
    /// was accepted, which is what the log records.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a CaseEvent>) -> Result<Case, CaseError> {
        let mut it = events.into_iter();
        let mut c = match it.next() {
            Some(e) => Case::open(e)?,
            None => return Err(CaseError::NotOpened),
        };
        for e in it {
            c = c.check(e, None)?;
        }
        Ok(c)
    }

    /// The case after a stored event (as [`Case::replay`] does it, one event at a time, for
    /// a store replaying its log).
    pub fn replay_next(&self, e: &CaseEvent) -> Result<Case, CaseError> {
        self.check(e, None)
    }

    /// The case after `e`, or why `e` is refused (and nothing changes). `now` is the clock at
    /// acceptance: a time more than five minutes after it is refused.
    ///
    /// An identical re-stamp (same milestone, same `at`) is accepted and returns the case
    /// unchanged; [`Case::is_duplicate`] tells the store not to append it.
    pub fn apply(&self, e: &CaseEvent, now: DateTime<Utc>) -> Result<Case, CaseError> {
        self.check(e, Some(now))
    }

    /// Whether `e` re-stamps a milestone with the time it has (accepted, changes nothing,
    /// need not be stored).
    pub fn is_duplicate(&self, e: &CaseEvent) -> bool {
        match e {
            CaseEvent::Stamped { milestone, stamp } => {
                self.stamps.get(milestone).is_some_and(|s| s.at == stamp.at)
            }
            _ => false,
        }
    }

    fn check(&self, e: &CaseEvent, now: Option<DateTime<Utc>>) -> Result<Case, CaseError> {
        let future = |at| match now {
            Some(now) => not_future(at, now),
            None => Ok(()),
        };
        match e {
            CaseEvent::Opened { .. } => Err(CaseError::AlreadyOpened),
            CaseEvent::Stamped { milestone, stamp } => {
                let m = *milestone;
                if let Some(had) = self.stamps.get(&m) {
                    return if had.at == stamp.at {
                        Ok(self.clone())
                    } else {
                        Err(CaseError::AlreadyStamped {
                            milestone: m,
                            at: had.at,
                        })
                    };
                }
                if matches!(stamp.source, Source::Entered | Source::Adt) && !m.entered() {
                    return Err(CaseError::WrongSource {
                        milestone: m,
                        given: stamp.source.as_str(),
                    });
                }
                if stamp.source == Source::Entered {
                    actor(stamp.by.as_deref().unwrap_or(""))?;
                }
                future(stamp.at)?;
                self.in_order(m, stamp.at)?;
                let mut c = self.clone();
                c.stamps.insert(m, stamp.clone());
                Ok(c)
            }
            CaseEvent::Referred(r) => {
                actor(&r.by)?;
                if r.to_institution.trim().is_empty() {
                    return Err(CaseError::EmptyInstitution);
                }
                if r.reason.trim().is_empty() {
                    return Err(CaseError::EmptyReason);
                }
                if self.referral.is_some() {
                    return Err(CaseError::ReferralActive);
                }
                future(r.at)?;
                let mut c = self.clone();
                c.referral = Some(r.clone());
                Ok(c)
            }
            CaseEvent::ReferralCancelled { by, at, reason } => {
                actor(by)?;
                if reason.trim().is_empty() {
                    return Err(CaseError::EmptyReason);
                }
                future(*at)?;
                let mut c = self.clone();
                let referral = c.referral.take().ok_or(CaseError::NoReferral)?;
                c.cancelled_referrals.push(CancelledReferral {
                    referral,
                    by: by.clone(),
                    at: *at,
                    reason: reason.clone(),
                });
                Ok(c)
            }
        }
    }

    /// Whether stamping `m` at `at` keeps its chain in order.
    fn in_order(&self, m: Milestone, at: DateTime<Utc>) -> Result<(), CaseError> {
        for chain in CHAINS {
            let Some(pos) = chain.iter().position(|&c| c == m) else {
                continue;
            };
            for (i, &other) in chain.iter().enumerate() {
                let Some(s) = self.stamps.get(&other) else {
                    continue;
                };
                if i < pos && s.at > at {
                    return Err(CaseError::OutOfOrder {
                        earlier: other,
                        earlier_at: s.at,
                        later: m,
                        later_at: at,
                    });
                }
                if i > pos && at > s.at {
                    return Err(CaseError::OutOfOrder {
                        earlier: m,
                        earlier_at: at,
                        later: other,
                        later_at: s.at,
                    });
                }
            }
        }
        Ok(())
    }

    /// A milestone's time, if stamped.
    pub fn at(&self, m: Milestone) -> Option<DateTime<Utc>> {
        self.stamps.get(&m).map(|s| s.at)
    }

    /// The first ECG's time: the cart's acquisition time, else huren's receipt when the
    /// device time is missing.
    pub fn first_ecg(&self) -> Option<DateTime<Utc>> {
        self.at(Milestone::EcgAcquired)
            .or_else(|| self.at(Milestone::EcgReceived))
    }

    /// The time a case is counted under: the earliest of first medical contact, the first
    /// ECG and the opening.
    pub fn index_time(&self) -> DateTime<Utc> {
        [self.at(Milestone::FirstMedicalContact), self.first_ecg()]
            .into_iter()
            .flatten()
            .fold(self.opened_at, |a, b| a.min(b))
    }

    /// Who acknowledged the alert (the `by` of the `alert_acknowledged` stamp).
    pub fn responder(&self) -> Option<&str> {
        self.stamps
            .get(&Milestone::AlertAcknowledged)
            .and_then(|s| s.by.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn opened() -> CaseEvent {
        CaseEvent::Opened {
            id: "case-1".into(),
            alert: "alert-1".into(),
            institution: "WSY".into(),
            pci_institution: "QZX".into(),
            group: "qzx-pci".into(),
            patient: "nid:abc".into(),
            ecg_report: "blake3:00".into(),
            at: t(0),
        }
    }

    fn stamp(m: Milestone, min: i64, source: Source) -> CaseEvent {
        CaseEvent::Stamped {
            milestone: m,
            stamp: Stamp {
                at: t(min),
                by: Some("nurse1".into()),
                source,
                recorded_at: t(min),
            },
        }
    }

    fn case() -> Case {
        Case::replay([&opened()]).unwrap()
    }

    #[test]
    fn names_round_trip_and_serde_agrees() {
        for m in Milestone::ALL {
            assert_eq!(Milestone::parse(m.as_str()), Some(m));
            let j = serde_json::to_string(&m).unwrap();
            assert_eq!(j, format!("\"{}\"", m.as_str()));
            assert!(!m.label_zh().is_empty());
        }
        assert_eq!(Milestone::parse("balloon"), None);
        let mut sorted = Milestone::ALL;
        sorted.sort();
        assert_eq!(
            sorted,
            Milestone::ALL,
            "ALL is in pathway (declaration) order"
        );
    }

    #[test]
    fn opened_first_and_once() {
        assert_eq!(
            Case::replay([&stamp(Milestone::DoorIn, 1, Source::Entered)]),
            Err(CaseError::NotOpened)
        );
        assert_eq!(Case::replay([]), Err(CaseError::NotOpened));
        assert_eq!(case().apply(&opened(), t(1)), Err(CaseError::AlreadyOpened));
    }

    #[test]
    fn stamps_are_immutable_and_identical_restamp_is_a_no_op() {
        let c = case();
        let e = stamp(Milestone::DoorIn, 5, Source::Entered);
        let c = c.apply(&e, t(5)).unwrap();
        assert!(c.is_duplicate(&e));
        assert_eq!(c.apply(&e, t(6)).unwrap(), c);
        // Same time from another source is still the same instant: no-op.
        let same = stamp(Milestone::DoorIn, 5, Source::Adt);
        assert!(c.is_duplicate(&same));
        assert_eq!(c.apply(&same, t(6)).unwrap(), c);
        assert_eq!(
            c.apply(&stamp(Milestone::DoorIn, 6, Source::Entered), t(7)),
            Err(CaseError::AlreadyStamped {
                milestone: Milestone::DoorIn,
                at: t(5)
            })
        );
        assert!(!c.is_duplicate(&stamp(Milestone::DoorOut, 5, Source::Entered)));
    }

    #[test]
    fn future_within_five_minutes_only() {
        let c = case();
        assert!(c
            .apply(&stamp(Milestone::DoorIn, 15, Source::Entered), t(10))
            .is_ok());
        assert_eq!(
            c.apply(&stamp(Milestone::DoorIn, 16, Source::Entered), t(10)),
            Err(CaseError::InFuture {
                at: t(16),
                now: t(10)
            })
        );
    }

    #[test]
    fn order_within_chains_checked_against_what_is_stamped() {
        let c = case()
            .apply(&stamp(Milestone::DoorIn, 10, Source::Adt), t(60))
            .unwrap()
            .apply(&stamp(Milestone::Arrival, 50, Source::Adt), t(60))
            .unwrap();
        // door_out missing: door_in ≤ arrival still binds it from both sides.
        assert_eq!(
            c.apply(&stamp(Milestone::DoorOut, 55, Source::Entered), t(60)),
            Err(CaseError::OutOfOrder {
                earlier: Milestone::DoorOut,
                earlier_at: t(55),
                later: Milestone::Arrival,
                later_at: t(50)
            })
        );
        assert_eq!(
            c.apply(
                &stamp(Milestone::TransferDecision, 5, Source::Entered),
                t(60)
            ),
            Err(CaseError::OutOfOrder {
                earlier: Milestone::DoorIn,
                earlier_at: t(10),
                later: Milestone::TransferDecision,
                later_at: t(5)
            })
        );
        // Equal times are in order.
        assert!(c
            .apply(&stamp(Milestone::DoorOut, 50, Source::Entered), t(60))
            .is_ok());
        let c = case()
            .apply(
                &stamp(Milestone::FirstMedicalContact, 0, Source::Entered),
                t(1),
            )
            .unwrap();
        assert!(matches!(
            c.apply(&stamp(Milestone::SymptomOnset, 1, Source::Entered), t(1)),
            Err(CaseError::OutOfOrder { .. })
        ));
        // Milestones in no chain are not ordered (a cart clock may be behind).
        assert!(c
            .apply(&stamp(Milestone::EcgAcquired, -30, Source::Device), t(1))
            .is_ok());
    }

    #[test]
    fn device_and_system_milestones_cannot_be_typed_in() {
        let c = case();
        for m in Milestone::ALL.into_iter().filter(|m| !m.entered()) {
            for s in [Source::Entered, Source::Adt] {
                assert_eq!(
                    c.apply(&stamp(m, 1, s), t(1)),
                    Err(CaseError::WrongSource {
                        milestone: m,
                        given: s.as_str()
                    })
                );
            }
            assert!(c.apply(&stamp(m, 1, Source::System), t(1)).is_ok());
        }
        let mut anon = stamp(Milestone::DoorIn, 1, Source::Entered);
        if let CaseEvent::Stamped { stamp, .. } = &mut anon {
            stamp.by = Some("  ".into());
        }
        assert_eq!(c.apply(&anon, t(1)), Err(CaseError::NoActor));
    }

    fn referral(to: &str, reason: &str) -> CaseEvent {
        CaseEvent::Referred(Referral {
            by: "dr1".into(),
            at: t(20),
            to_institution: to.into(),
            reason: reason.into(),
            expected_arrival: Some(t(80)),
            attachments: vec!["blake3:00".into()],
        })
    }

    #[test]
    fn referral_rules() {
        let c = case();
        assert_eq!(
            c.apply(&referral(" ", "STEMI"), t(20)),
            Err(CaseError::EmptyInstitution)
        );
        assert_eq!(
            c.apply(&referral("QZX", ""), t(20)),
            Err(CaseError::EmptyReason)
        );
        let cancel = |reason: &str| CaseEvent::ReferralCancelled {
            by: "dr1".into(),
            at: t(25),
            reason: reason.into(),
        };
        assert_eq!(c.apply(&cancel("wrong"), t(25)), Err(CaseError::NoReferral));
        let c = c.apply(&referral("QZX", "STEMI"), t(20)).unwrap();
        assert_eq!(
            c.apply(&referral("QZX", "STEMI"), t(21)),
            Err(CaseError::ReferralActive)
        );
        assert_eq!(c.apply(&cancel(" "), t(25)), Err(CaseError::EmptyReason));
        let c = c.apply(&cancel("cath lab closed"), t(25)).unwrap();
        assert!(c.referral.is_none());
        assert_eq!(c.cancelled_referrals.len(), 1);
        assert_eq!(c.cancelled_referrals[0].referral.to_institution, "QZX");
        // A new referral after the cancellation is allowed.
        assert!(c.apply(&referral("SRM", "STEMI"), t(30)).is_ok());
    }

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            opened(),
            stamp(Milestone::DoorIn, 1, Source::Adt),
            referral("QZX", "STEMI"),
            CaseEvent::ReferralCancelled {
                by: "dr1".into(),
                at: t(25),
                reason: "x".into(),
            },
        ];
        for e in &events {
            let j = serde_json::to_value(e).unwrap();
            assert!(j.get("event").is_some());
            let back: CaseEvent = serde_json::from_value(j).unwrap();
            assert_eq!(&back, e);
        }
        let j = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(j["event"], "stamped");
        assert_eq!(j["milestone"], "door_in");
        assert_eq!(j["stamp"]["source"], "adt");
    }

    #[test]
    fn index_time_and_first_ecg() {
        let c = case();
        assert_eq!(c.index_time(), t(0));
        let c = c
            .apply(&stamp(Milestone::EcgReceived, -3, Source::System), t(0))
            .unwrap();
        assert_eq!(c.first_ecg(), Some(t(-3)));
        assert_eq!(c.index_time(), t(-3));
        let c = c
            .apply(&stamp(Milestone::EcgAcquired, -4, Source::Device), t(0))
            .unwrap()
            .apply(
                &stamp(Milestone::FirstMedicalContact, -10, Source::Entered),
                t(0),
            )
            .unwrap();
        assert_eq!(c.first_ecg(), Some(t(-4)));
        assert_eq!(c.index_time(), t(-10));
    }
}
