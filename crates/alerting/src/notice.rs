//! What of an alert is worth telling a recipient group's outside channels (webhooks to a
//! region's WeCom, DingTalk or SMS gateway): its raising, each escalation step, and its end
//! (acknowledged with a decision, or cancelled). Deliveries and reads are not told. Each
//! notice has a key stable for the alert (`raised`, `step-2`, `acknowledged`, `cancelled`),
//! so whoever sends them can send each exactly once, however often it looks.

use chrono::{DateTime, Utc};

use crate::alert::{Alert, State, Tier};

/// One thing to tell about an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Stable within the alert: `raised`, `step-N` (N ≥ 1), `acknowledged`, `cancelled`.
    pub key: String,
    /// The event type as sent: `alert.raised`, `alert.escalated`, `alert.acknowledged`,
    /// `alert.cancelled`.
    pub kind: &'static str,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The escalation step it concerns (0 for the raising; the last step for an end).
    pub step: u32,
    /// Who that step notified.
    pub tiers: Vec<Tier>,
}

/// The notices of an alert as it stands, in the order they happened.
pub fn notices(a: &Alert) -> Vec<Notice> {
    let mut out: Vec<Notice> = a
        .steps
        .iter()
        .map(|s| Notice {
            key: if s.step == 0 {
                "raised".to_string()
            } else {
                format!("step-{}", s.step)
            },
            kind: if s.step == 0 {
                "alert.raised"
            } else {
                "alert.escalated"
            },
            at: s.at,
            step: s.step,
            tiers: s.tiers.clone(),
        })
        .collect();
    let last = a.step();
    let end = match &a.state {
        State::Open => None,
        State::Acknowledged { at, .. } => Some(("acknowledged", "alert.acknowledged", *at)),
        State::Cancelled { at, .. } => Some(("cancelled", "alert.cancelled", *at)),
    };
    if let Some((key, kind, at)) = end {
        out.push(Notice {
            key: key.to_string(),
            kind,
            at,
            step: last.step,
            tiers: last.tiers.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, AlertKind, Decision, Event, Raised, Step};

    fn raised() -> Alert {
        Alert::new(&Raised {
            id: AlertId("a-1".into()),
            kind: AlertKind::Stemi,
            institution: "SQ".into(),
            group: "pci".into(),
            report: "blake3:00".into(),
            summary: "急性下壁心肌梗死".into(),
            at: DateTime::from_timestamp(1_000, 0).unwrap_or_default(),
        })
    }

    #[test]
    fn raising_steps_and_the_end_each_once_in_order() {
        let a = raised();
        let keys = |a: &Alert| notices(a).into_iter().map(|n| n.key).collect::<Vec<_>>();
        assert_eq!(keys(&a), ["raised"]);
        let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        let a = a
            .apply(&Event::Escalated(Step {
                step: 1,
                tiers: vec![Tier::Duty, Tier::Backup],
                at: at(1_120),
            }))
            .unwrap();
        let a = a
            .apply(&Event::Delivered {
                to: "dr".into(),
                at: at(1_121),
            })
            .unwrap();
        assert_eq!(keys(&a), ["raised", "step-1"]);
        let a = a
            .apply(&Event::Acknowledged {
                by: "dr".into(),
                at: at(1_130),
                decision: Decision::StemiTransfer,
                note: String::new(),
            })
            .unwrap();
        let n = notices(&a);
        assert_eq!(keys(&a), ["raised", "step-1", "acknowledged"]);
        assert_eq!(n[2].kind, "alert.acknowledged");
        assert_eq!(n[2].at, at(1_130));
        assert_eq!(n[2].step, 1);
        assert_eq!(n[1].tiers, [Tier::Duty, Tier::Backup]);
    }

    #[test]
    fn a_cancellation_is_told() {
        let a = raised()
            .apply(&Event::Cancelled {
                by: "dr".into(),
                at: DateTime::from_timestamp(2_000, 0).unwrap_or_default(),
                reason: "wrong patient".into(),
            })
            .unwrap();
        let n = notices(&a);
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[1].key.as_str(), n[1].kind),
            ("cancelled", "alert.cancelled")
        );
    }
}
