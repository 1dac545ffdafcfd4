//! The alert: its identity, what raised it, its states and the events that move it.
//!
//! An alert is the fold of its events ([`Alert::replay`]); [`Alert::apply`] is the one place
//! a transition is allowed or refused, so the store appends an event only after `apply`
//! accepted it. The lifecycle follows IHE ACM (Alert Communication Management): raised →
//! delivered (to a screen) → read → responded (here: acknowledged with a decision), or
//! cancelled with a reason; escalation steps are stamped events too. An alert is open until
//! it is acknowledged or cancelled — nothing else closes it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An alert's identifier (chosen by the store, e.g. from the report chain).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub String);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An ECG flagged acute MI / STEMI (by the cart, or signed so by a reader).
    Stemi,
    /// A lab critical value (危急值).
    LabCritical,
}

impl AlertKind {
    /// As written in the API and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Stemi => "stemi",
            AlertKind::LabCritical => "lab_critical",
        }
    }

    /// The decisions an acknowledgement of this kind may carry.
    pub fn decisions(self) -> &'static [Decision] {
        match self {
            AlertKind::Stemi => &[
                Decision::StemiTransfer,
                Decision::NotStemi,
                Decision::NeedMore,
            ],
            AlertKind::LabCritical => &[Decision::ReadBack],
        }
    }
}

/// The responder's decision (the read-back loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// STEMI confirmed: transfer now (to the PCI hospital's cath lab).
    StemiTransfer,
    /// Not a STEMI; the note carries the advice.
    NotStemi,
    /// More is needed (a repeat ECG, troponin …); the note says what.
    NeedMore,
    /// A critical value read back (the note carries the value as read back).
    ReadBack,
}

impl Decision {
    /// As written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::StemiTransfer => "stemi_transfer",
            Decision::NotStemi => "not_stemi",
            Decision::NeedMore => "need_more",
            Decision::ReadBack => "read_back",
        }
    }

    /// From its API name.
    pub fn parse(s: &str) -> Option<Decision> {
        [
            Decision::StemiTransfer,
            Decision::NotStemi,
            Decision::NeedMore,
            Decision::ReadBack,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    /// Whether the note is required (not for a confirmed transfer).
    pub fn needs_note(self) -> bool {
        !matches!(self, Decision::StemiTransfer)
    }
}

/// Who an escalation step notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The group's readers on duty now.
    Duty,
    /// The group's backups.
    Backup,
    /// The group's heads of department.
    Head,
}

/// What raised an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Raised {
    /// The identifier.
    pub id: AlertId,
    /// STEMI or critical value.
    pub kind: AlertKind,
    /// The sending institution (where the patient is).
    pub institution: String,
    /// The recipient group (configured `[[alert_group]]`).
    pub group: String,
    /// The report that raised it (`blake3:…`).
    pub report: String,
    /// What it is about, in words (the ECG statement, or `K 6.8 mmol/L`); no identifiers.
    pub summary: String,
    /// When it was raised (the report's receipt).
    pub at: DateTime<Utc>,
}

/// One escalation step as stamped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// 0: the first notification at raising; 1, 2 …: escalations.
    pub step: u32,
    /// Who it notified.
    pub tiers: Vec<Tier>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Something that happened to an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Raised (and step 0 notified: the duty tier).
    Raised(Raised),
    /// Shown on a principal's screen (the event stream delivered it).
    Delivered {
        /// Principal id.
        to: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Opened by a principal.
    Read {
        /// Principal id.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The next escalation step was taken.
    Escalated(Step),
    /// Acknowledged with a decision.
    Acknowledged {
        /// Principal id.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// The decision.
        decision: Decision,
        /// Advice, what more is needed, the value read back.
        note: String,
    },
    /// Withdrawn with a reason (e.g. raised on the wrong patient).
    Cancelled {
        /// Principal id.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

impl Event {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Event::Raised(r) => r.at,
            Event::Escalated(s) => s.at,
            Event::Delivered { at, .. }
            | Event::Read { at, .. }
            | Event::Acknowledged { at, .. }
            | Event::Cancelled { at, .. } => *at,
        }
    }
}

/// Where an alert stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting for an acknowledgement.
    Open,
    /// Acknowledged; terminal.
    Acknowledged {
        /// Who.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// The decision.
        decision: Decision,
        /// The note.
        note: String,
    },
    /// Cancelled; terminal.
    Cancelled {
        /// Who.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

impl State {
    /// `open`, `acknowledged`, `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged { .. } => "acknowledged",
            State::Cancelled { .. } => "cancelled",
        }
    }
}

/// Why an event does not apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// It is acknowledged or cancelled already.
    #[error("the alert is {0} already")]
    Closed(&'static str),
    /// The decision does not fit the alert's kind.
    #[error("decision {decision} does not answer a {kind} alert")]
    WrongDecision {
        /// The decision given.
        decision: &'static str,
        /// The alert's kind.
        kind: &'static str,
    },
    /// The decision needs a note and has none.
    #[error("decision {0} needs a note")]
    NoteRequired(&'static str),
    /// A cancellation without a reason.
    #[error("a cancellation needs a reason")]
    EmptyReason,
    /// No actor.
    #[error("the act names no one")]
    NoActor,
    /// An escalation out of order.
    #[error("escalation step {got} after step {had}")]
    StepOrder {
        /// The step given.
        got: u32,
        /// The last step taken.
        had: u32,
    },
    /// `Raised` for an alert that exists.
    #[error("the alert exists")]
    Exists,
}

/// An alert as its events made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What raised it.
    pub raised: Raised,
    /// Where it stands.
    pub state: State,
    /// The escalation steps taken, step 0 (the raise) first.
    pub steps: Vec<Step>,
    /// Screens it reached: principal and first delivery.
    pub delivered: Vec<(String, DateTime<Utc>)>,
    /// Who opened it: principal and first read.
    pub read: Vec<(String, DateTime<Utc>)>,
}

fn actor(by: &str) -> Result<(), AlertError> {
    if by.trim().is_empty() {
        Err(AlertError::NoActor)
    } else {
        Ok(())
    }
}

impl Alert {
    /// A raised alert: open, step 0 (the duty tier) taken at raising.
    pub fn new(r: &Raised) -> Alert {
        Alert {
            raised: r.clone(),
            state: State::Open,
            steps: vec![Step {
                step: 0,
                tiers: vec![Tier::Duty],
                at: r.at,
            }],
            delivered: Vec::new(),
            read: Vec::new(),
        }
    }

    /// The alert of a sequence of events (the first must be `Raised`); the first refused
    /// event's error.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Alert, AlertError> {
        let mut it = events.into_iter();
        let mut a = match it.next() {
            Some(Event::Raised(r)) => Alert::new(r),
            _ => return Err(AlertError::NoActor),
        };
        for e in it {
            a = a.apply(e)?;
        }
        Ok(a)
    }

    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The last escalation step taken.
    pub fn step(&self) -> &Step {
        // `new` always records step 0.
        &self.steps[self.steps.len() - 1]
    }

    /// The alert after `e`, or why not. Delivery and reading are recorded once per principal
    /// and stay allowed after the alert closed (a screen may show the decision late);
    /// acknowledging, cancelling and escalating need an open alert.
    pub fn apply(&self, e: &Event) -> Result<Alert, AlertError> {
        let mut a = self.clone();
        match e {
            Event::Raised(_) => return Err(AlertError::Exists),
            Event::Delivered { to, at } => {
                actor(to)?;
                if !a.delivered.iter().any(|(p, _)| p == to) {
                    a.delivered.push((to.clone(), *at));
                }
            }
            Event::Read { by, at } => {
                actor(by)?;
                if !a.read.iter().any(|(p, _)| p == by) {
                    a.read.push((by.clone(), *at));
                }
            }
            Event::Escalated(s) => {
                self.open()?;
                let had = self.step().step;
                if s.step != had + 1 {
                    return Err(AlertError::StepOrder { got: s.step, had });
                }
                a.steps.push(s.clone());
            }
            Event::Acknowledged {
                by,
                at,
                decision,
                note,
            } => {
                self.open()?;
                actor(by)?;
                let kind = self.raised.kind;
                if !kind.decisions().contains(decision) {
                    return Err(AlertError::WrongDecision {
                        decision: decision.as_str(),
                        kind: kind.as_str(),
                    });
                }
                if decision.needs_note() && note.trim().is_empty() {
                    return Err(AlertError::NoteRequired(decision.as_str()));
                }
                a.state = State::Acknowledged {
                    by: by.clone(),
                    at: *at,
                    decision: *decision,
                    note: note.clone(),
                };
            }
            Event::Cancelled { by, at, reason } => {
                self.open()?;
                actor(by)?;
                if reason.trim().is_empty() {
                    return Err(AlertError::EmptyReason);
                }
                a.state = State::Cancelled {
                    by: by.clone(),
                    at: *at,
                    reason: reason.clone(),
                };
            }
        }
        Ok(a)
    }

    fn open(&self) -> Result<(), AlertError> {
        match self.state {
            State::Open => Ok(()),
            ref s => Err(AlertError::Closed(s.as_str())),
        }
    }

    /// When it was acknowledged or cancelled.
    pub fn closed_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Open => None,
            State::Acknowledged { at, .. } | State::Cancelled { at, .. } => Some(*at),
        }
    }

    /// The tiers notified so far (every step's, without repeats, in order).
    pub fn tiers(&self) -> Vec<Tier> {
        let mut out = Vec::new();
        for s in &self.steps {
            for t in &s.tiers {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn raised(kind: AlertKind) -> Raised {
        Raised {
            id: AlertId("a1".into()),
            kind,
            institution: "FX-SQ01".into(),
            group: "fx-pci".into(),
            report: format!("blake3:{}", "a".repeat(64)),
            summary: "急性下壁心肌梗死".into(),
            at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap(),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap() + chrono::Duration::seconds(s)
    }

    fn ack(by: &str, decision: Decision, note: &str) -> Event {
        Event::Acknowledged {
            by: by.into(),
            at: at(60),
            decision,
            note: note.into(),
        }
    }

    #[test]
    fn an_alert_is_open_until_acknowledged_with_a_fitting_decision_or_cancelled_with_a_reason() {
        let a = Alert::new(&raised(AlertKind::Stemi));
        assert!(a.is_open());
        assert_eq!(a.step().step, 0);
        assert_eq!(a.tiers(), vec![Tier::Duty]);
        // Delivered and read once per principal.
        let a = a
            .apply(&Event::Delivered {
                to: "dr.c".into(),
                at: at(1),
            })
            .unwrap()
            .apply(&Event::Delivered {
                to: "dr.c".into(),
                at: at(5),
            })
            .unwrap()
            .apply(&Event::Read {
                by: "dr.c".into(),
                at: at(9),
            })
            .unwrap();
        assert_eq!(a.delivered, vec![("dr.c".to_string(), at(1))]);
        assert!(a.is_open(), "delivery and reading do not close it");
        assert_eq!(
            a.apply(&ack("dr.c", Decision::ReadBack, "x")),
            Err(AlertError::WrongDecision {
                decision: "read_back",
                kind: "stemi"
            })
        );
        assert_eq!(
            a.apply(&ack("dr.c", Decision::NotStemi, " ")),
            Err(AlertError::NoteRequired("not_stemi"))
        );
        assert_eq!(
            a.apply(&ack(" ", Decision::StemiTransfer, "")),
            Err(AlertError::NoActor)
        );
        let done = a.apply(&ack("dr.c", Decision::StemiTransfer, "")).unwrap();
        assert_eq!(done.state.as_str(), "acknowledged");
        assert_eq!(done.closed_at(), Some(at(60)));
        // Closed: no second acknowledgement, no cancellation, no escalation.
        assert_eq!(
            done.apply(&ack("dr.b", Decision::NotStemi, "no")),
            Err(AlertError::Closed("acknowledged"))
        );
        assert!(done
            .apply(&Event::Cancelled {
                by: "x".into(),
                at: at(70),
                reason: "r".into()
            })
            .is_err());
        assert!(done
            .apply(&Event::Escalated(Step {
                step: 1,
                tiers: vec![Tier::Backup],
                at: at(120)
            }))
            .is_err());
        // A late delivery is still recorded (the screen shows the decision).
        assert!(done
            .apply(&Event::Delivered {
                to: "dr.b".into(),
                at: at(80)
            })
            .is_ok());
        // Cancelling needs a reason.
        assert_eq!(
            a.apply(&Event::Cancelled {
                by: "x".into(),
                at: at(70),
                reason: "".into()
            }),
            Err(AlertError::EmptyReason)
        );
        let lab = Alert::new(&raised(AlertKind::LabCritical));
        assert!(lab
            .apply(&ack("dr.d", Decision::ReadBack, "K 6.8 mmol/L"))
            .is_ok());
        assert!(
            lab.apply(&ack("dr.d", Decision::ReadBack, "")).is_err(),
            "read-back names the value"
        );
    }

    #[test]
    fn escalation_steps_come_in_order_and_replay_gives_the_same_alert() {
        let r = raised(AlertKind::Stemi);
        let e1 = Event::Escalated(Step {
            step: 1,
            tiers: vec![Tier::Duty, Tier::Backup],
            at: at(120),
        });
        let e2 = Event::Escalated(Step {
            step: 2,
            tiers: vec![Tier::Head],
            at: at(240),
        });
        let a = Alert::new(&r);
        assert_eq!(a.apply(&e2), Err(AlertError::StepOrder { got: 2, had: 0 }));
        let a = a.apply(&e1).unwrap().apply(&e2).unwrap();
        assert_eq!(a.tiers(), vec![Tier::Duty, Tier::Backup, Tier::Head]);
        let events = vec![Event::Raised(r), e1, e2];
        assert_eq!(Alert::replay(&events).unwrap(), a);
        let json = serde_json::to_string(&events).unwrap();
        let back: Vec<Event> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, events);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn event(kind: u8, who: u8, step: u32, t: i64) -> Event {
            let by = ["dr.a", "dr.b", ""][who as usize % 3].to_string();
            match kind % 6 {
                0 => Event::Delivered { to: by, at: at(t) },
                1 => Event::Read { by, at: at(t) },
                2 => Event::Escalated(Step {
                    step,
                    tiers: vec![Tier::Duty],
                    at: at(t),
                }),
                3 => ack(
                    &by,
                    Decision::NotStemi,
                    if t % 2 == 0 { "advice" } else { "" },
                ),
                4 => ack(&by, Decision::StemiTransfer, ""),
                _ => Event::Cancelled {
                    by,
                    at: at(t),
                    reason: if t % 3 == 0 {
                        String::new()
                    } else {
                        "r".into()
                    },
                },
            }
        }

        proptest! {
            #[test]
            fn closed_once_steps_consecutive_and_replay_agrees(
                evs in proptest::collection::vec((0u8..6, 0u8..3, 0u32..4, 0i64..600), 0..40)
            ) {
                let r = raised(AlertKind::Stemi);
                let mut a = Alert::new(&r);
                let mut accepted = vec![Event::Raised(r)];
                let mut closes = 0;
                for (k, w, s, t) in evs {
                    let e = event(k, w, s, t);
                    let was_open = a.is_open();
                    if let Ok(n) = a.apply(&e) {
                        if was_open && !n.is_open() {
                            closes += 1;
                        }
                        prop_assert!(was_open || n.state == a.state, "a closed alert never changes state");
                        a = n;
                        accepted.push(e);
                    }
                }
                prop_assert!(closes <= 1);
                for (n, s) in a.steps.iter().enumerate() {
                    prop_assert_eq!(s.step as usize, n);
                }
                prop_assert_eq!(Alert::replay(&accepted).unwrap(), a);
            }
        }
    }
}
