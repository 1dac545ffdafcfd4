//! Who is alerted, and when the next step is due: `[[alert_group]]` (a recipient group at a
//! PCI hospital or an institution's duty doctors: backups, heads, phone, escalation delay),
//! `[[alert_duty]]` (its duty roster, windows as in `[[roster]]`), `[[alert_route]]` (which
//! group a sending institution's STEMI or critical value goes to) and `[[critical_threshold]]`
//! (lab items critical beyond a bound, besides OBX-8 HH / LL / AA). Checked once into
//! [`Alerting`], every problem named.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use huren_workflow::{CentreConfig, CentreId, RosterEntry, WorkflowConfig};
use serde::Deserialize;

use crate::alert::{Alert, AlertKind, Step, Tier};

/// The escalation delay when a group sets none (issue 18: 2 minutes).
pub const DEFAULT_ESCALATE_AFTER_SECS: u32 = 120;

/// A recipient group (`[[alert_group]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertGroup {
    /// Identifier, e.g. `fx-pci`.
    pub id: String,
    /// Display name, e.g. `区中心医院胸痛中心`.
    #[serde(default)]
    pub name: String,
    /// The hosting institution (the PCI hospital).
    pub institution: String,
    /// Its phone, shown with the alert.
    #[serde(default)]
    pub phone: Option<String>,
    /// Seconds without an acknowledgement before the next escalation step (default 120).
    #[serde(default)]
    pub escalate_after_secs: Option<u32>,
    /// Backups (principal ids): notified from step 1.
    #[serde(default)]
    pub backup: Vec<String>,
    /// Heads of department (principal ids): notified from step 2; they also see the KPIs.
    #[serde(default)]
    pub heads: Vec<String>,
    /// The time zone of its duty windows (default `Asia/Shanghai`).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Who is on duty for a group, when (`[[alert_duty]]`; windows as in `[[roster]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDuty {
    /// Principal id.
    pub reader: String,
    /// The group.
    pub group: String,
    /// Weekdays the window starts on; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, with `to`; both omitted: all day.
    #[serde(default)]
    pub from: Option<String>,
    /// `HH:MM`, exclusive; before `from`: past midnight.
    #[serde(default)]
    pub to: Option<String>,
}

/// Where a sending institution's alerts of a kind go (`[[alert_route]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRoute {
    /// The sending institution, or `*`.
    pub institution: String,
    /// `stemi` or `lab_critical`.
    pub kind: AlertKind,
    /// The group.
    pub group: String,
}

/// A lab item critical beyond a bound (`[[critical_threshold]]`), e.g. K ≥ 6.5 mmol/L.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The item code as the LIS sends it (OBX-3.1), or a LOINC code.
    pub code: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Critical at or below this.
    #[serde(default)]
    pub low: Option<f64>,
    /// Critical at or above this.
    #[serde(default)]
    pub high: Option<f64>,
    /// The unit the bounds are in (a value in another unit is not compared).
    #[serde(default)]
    pub unit: Option<String>,
}

/// The alerting part of the configuration, as written.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AlertConfig {
    /// `[[alert_group]]`.
    #[serde(default, rename = "alert_group")]
    pub groups: Vec<AlertGroup>,
    /// `[[alert_duty]]`.
    #[serde(default, rename = "alert_duty")]
    pub duty: Vec<AlertDuty>,
    /// `[[alert_route]]`.
    #[serde(default, rename = "alert_route")]
    pub routes: Vec<AlertRoute>,
    /// `[[critical_threshold]]`.
    #[serde(default, rename = "critical_threshold")]
    pub thresholds: Vec<Threshold>,
}

/// The configuration could not be used: every problem, each naming its entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .issues.join("; "))]
pub struct AlertConfigError {
    /// The problems.
    pub issues: Vec<String>,
}

/// When each escalation step of a group falls due and whom it notifies: step 0 (at raising)
/// the duty tier; step 1 the duty tier again and the backups; step 2 and every later step
/// all three tiers (the duty tier, the backups, the heads) — an unanswered alert keeps
/// escalating every `after`, it never goes quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ladder {
    /// The delay between steps.
    pub after: Duration,
}

impl Ladder {
    /// The tiers step `n` notifies.
    pub fn tiers(n: u32) -> Vec<Tier> {
        match n {
            0 => vec![Tier::Duty],
            1 => vec![Tier::Duty, Tier::Backup],
            _ => vec![Tier::Duty, Tier::Backup, Tier::Head],
        }
    }

    /// The next step of an open alert and when it falls due (from the last step's stamp,
    /// so a restart resumes the ladder where it was); none for a closed alert.
    pub fn next(&self, a: &Alert) -> Option<Step> {
        if !a.is_open() {
            return None;
        }
        let last = a.step();
        Some(Step {
            step: last.step + 1,
            tiers: Ladder::tiers(last.step + 1),
            at: last.at + self.after,
        })
    }

    /// The step due at `now`, stamped `now` (a step overdue by a restart is taken once, at
    /// once, and the ladder goes on from it).
    pub fn due(&self, a: &Alert, now: DateTime<Utc>) -> Option<Step> {
        self.next(a)
            .filter(|s| s.at <= now)
            .map(|s| Step { at: now, ..s })
    }
}

#[derive(Clone, Debug)]
struct Group {
    name: String,
    institution: String,
    phone: Option<String>,
    after: Duration,
    backup: Vec<String>,
    heads: Vec<String>,
}

/// The validated alerting configuration.
#[derive(Clone, Debug, Default)]
pub struct Alerting {
    groups: HashMap<String, Group>,
    routes: HashMap<(Option<String>, AlertKind), String>,
    /// The groups' duty rosters, kept as a workflow whose centres are the groups.
    duty: huren_workflow::Workflow,
    thresholds: Vec<Threshold>,
}

impl AlertConfig {
    /// Checks the configuration and builds [`Alerting`]. `known_institution` answers whether
    /// an institution code is configured. Refused, with every problem: an empty, `*` or
    /// duplicate group id, an unknown hosting institution, a zero escalation delay, an
    /// unknown time zone; a duty entry as `[[roster]]` refuses one (unknown group, bad
    /// window …); a route naming an unknown group or institution, two routes for one
    /// institution × kind; a threshold without a code or without a bound, or with low ≥ high.
    pub fn validate(
        &self,
        known_institution: impl Fn(&str) -> bool,
    ) -> Result<Alerting, AlertConfigError> {
        let mut issues = Vec::new();
        let mut a = Alerting::default();
        for g in &self.groups {
            if g.id.trim().is_empty() || g.id == "*" {
                issues.push(format!(
                    "alert_group {:?}: the id must be non-empty and not `*`",
                    g.id
                ));
                continue;
            }
            if g.escalate_after_secs == Some(0) {
                issues.push(format!(
                    "alert_group {}: escalate_after_secs must be at least 1",
                    g.id
                ));
            }
            let after = g.escalate_after_secs.unwrap_or(DEFAULT_ESCALATE_AFTER_SECS);
            let group = Group {
                name: g.name.clone(),
                institution: g.institution.clone(),
                phone: g.phone.clone(),
                after: Duration::seconds(i64::from(after)),
                backup: g.backup.clone(),
                heads: g.heads.clone(),
            };
            if a.groups.insert(g.id.clone(), group).is_some() {
                issues.push(format!("alert_group {}: the id appears twice", g.id));
            }
        }
        // The duty rosters: checked (windows, days, time zones, institutions) by the
        // reading-centre workflow's rules, the groups standing in for centres.
        let wf = WorkflowConfig {
            centres: self
                .groups
                .iter()
                .map(|g| CentreConfig {
                    id: g.id.clone(),
                    name: g.name.clone(),
                    institution: g.institution.clone(),
                    claim_timeout_minutes: None,
                    time_zone: g.time_zone.clone(),
                    heads: g.heads.clone(),
                })
                .collect(),
            routes: vec![],
            due: vec![],
            roster: self
                .duty
                .iter()
                .map(|d| RosterEntry {
                    reader: d.reader.clone(),
                    centre: d.group.clone(),
                    days: d.days.clone(),
                    from: d.from.clone(),
                    to: d.to.clone(),
                })
                .collect(),
        };
        match wf.validate(&known_institution) {
            Ok(w) => a.duty = w,
            Err(e) => issues.extend(e.issues.into_iter().map(|i| {
                i.replacen("centre ", "alert_group ", 1)
                    .replacen("roster #", "alert_duty #", 1)
            })),
        }
        for (i, r) in self.routes.iter().enumerate() {
            let name = format!(
                "alert_route #{} ({} {} → {})",
                i + 1,
                r.institution,
                r.kind.as_str(),
                r.group
            );
            if !a.groups.contains_key(&r.group) {
                issues.push(format!("{name}: unknown group {:?}", r.group));
            }
            let inst = (r.institution != "*").then(|| r.institution.clone());
            if let Some(code) = &inst {
                if !known_institution(code) {
                    issues.push(format!("{name}: unknown institution {code:?}"));
                }
            }
            if a.routes.insert((inst, r.kind), r.group.clone()).is_some() {
                issues.push(format!(
                    "{name}: a second route for this institution and kind"
                ));
            }
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            let name = format!("critical_threshold #{} ({})", i + 1, t.code);
            if t.code.trim().is_empty() {
                issues.push(format!("{name}: the code is empty"));
            }
            match (t.low, t.high) {
                (None, None) => issues.push(format!("{name}: give low, high or both")),
                (Some(l), Some(h)) if l >= h => {
                    issues.push(format!("{name}: low {l} must be below high {h}"))
                }
                _ => {}
            }
        }
        a.thresholds = self.thresholds.clone();
        let mut seen = std::collections::HashSet::new();
        issues.retain(|i| seen.insert(i.clone()));
        if issues.is_empty() {
            Ok(a)
        } else {
            Err(AlertConfigError { issues })
        }
    }
}

impl Alerting {
    /// The group a sending institution's alerts of `kind` go to: its own route, else `*`'s.
    pub fn route(&self, institution: &str, kind: AlertKind) -> Option<&str> {
        self.routes
            .get(&(Some(institution.to_string()), kind))
            .or_else(|| self.routes.get(&(None, kind)))
            .map(String::as_str)
    }

    /// A group's name, hosting institution and phone.
    pub fn group(&self, id: &str) -> Option<(&str, &str, Option<&str>)> {
        self.groups
            .get(id)
            .map(|g| (g.name.as_str(), g.institution.as_str(), g.phone.as_deref()))
    }

    /// The group's escalation ladder (the default delay for an unknown group).
    pub fn ladder(&self, group: &str) -> Ladder {
        Ladder {
            after: self.groups.get(group).map_or(
                Duration::seconds(i64::from(DEFAULT_ESCALATE_AFTER_SECS)),
                |g| g.after,
            ),
        }
    }

    /// Whether `who` is on duty for `group` at `now`.
    pub fn on_duty(&self, who: &str, group: &str, now: DateTime<Utc>) -> bool {
        self.duty.on_duty(who, &CentreId(group.to_string()), now)
    }

    /// Whether `who` belongs to a tier of `group` at `now`.
    pub fn in_tier(&self, who: &str, group: &str, tier: Tier, now: DateTime<Utc>) -> bool {
        let Some(g) = self.groups.get(group) else {
            return false;
        };
        match tier {
            Tier::Duty => self.on_duty(who, group, now),
            Tier::Backup => g.backup.iter().any(|b| b == who),
            Tier::Head => g.heads.iter().any(|h| h == who),
        }
    }

    /// Whether `who` is among an alert's recipients so far (a tier its steps notified): they
    /// see it and may acknowledge or cancel it.
    pub fn is_recipient(&self, who: &str, a: &Alert, now: DateTime<Utc>) -> bool {
        a.tiers()
            .into_iter()
            .any(|t| self.in_tier(who, &a.raised.group, t, now))
    }

    /// Whether `who` heads any group (sees the chest-pain KPIs).
    pub fn is_head(&self, who: &str) -> bool {
        self.groups
            .values()
            .any(|g| g.heads.iter().any(|h| h == who))
    }

    /// The groups `who` heads, sorted.
    pub fn headed_by(&self, who: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.heads.iter().any(|h| h == who))
            .map(|(id, _)| id.clone())
            .collect();
        v.sort();
        v
    }

    /// The threshold a lab value crosses: its item `code`, numeric `value` in `unit`.
    pub fn crossed(&self, code: &str, value: f64, unit: Option<&str>) -> Option<&Threshold> {
        self.thresholds.iter().find(|t| {
            t.code == code
                && t.unit
                    .as_deref()
                    .is_none_or(|u| unit.is_some_and(|v| v.eq_ignore_ascii_case(u)))
                && (t.high.is_some_and(|h| value >= h) || t.low.is_some_and(|l| value <= l))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, Event, Raised};
    use chrono::TimeZone;

    const TOML: &str = r#"
[[alert_group]]
id = "fx-pci"
name = "区中心医院胸痛中心"
institution = "FXCH"
phone = "021-5742-0000"
escalate_after_secs = 120
backup = ["dr.backup"]
heads = ["dr.head"]

[[alert_duty]]
reader = "dr.day"
group = "fx-pci"
from = "08:00"
to = "20:00"

[[alert_duty]]
reader = "dr.night"
group = "fx-pci"
from = "20:00"
to = "08:00"

[[alert_route]]
institution = "*"
kind = "stemi"
group = "fx-pci"

[[alert_route]]
institution = "CHC1"
kind = "lab_critical"
group = "fx-pci"

[[critical_threshold]]
code = "K"
name = "钾"
low = 2.8
high = 6.5
unit = "mmol/L"
"#;

    fn alerting() -> Alerting {
        let c: AlertConfig = toml::from_str(TOML).unwrap();
        c.validate(|i| ["FXCH", "CHC1"].contains(&i)).unwrap()
    }

    /// Shanghai local time on 2026-12-07.
    fn local(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap() - Duration::hours(8)
    }

    fn alert(at: DateTime<Utc>) -> Alert {
        Alert::new(&Raised {
            id: AlertId("a".into()),
            kind: AlertKind::Stemi,
            institution: "CHC1".into(),
            group: "fx-pci".into(),
            report: "blake3:00".into(),
            summary: "急性下壁心肌梗死".into(),
            at,
        })
    }

    #[test]
    fn routes_duty_tiers_and_thresholds() {
        let a = alerting();
        assert_eq!(a.route("CHC1", AlertKind::Stemi), Some("fx-pci"));
        assert_eq!(a.route("CHC1", AlertKind::LabCritical), Some("fx-pci"));
        assert_eq!(a.route("OTHER", AlertKind::LabCritical), None);
        assert_eq!(a.group("fx-pci").unwrap().2, Some("021-5742-0000"));
        assert!(a.on_duty("dr.day", "fx-pci", local(12, 0)));
        assert!(!a.on_duty("dr.day", "fx-pci", local(21, 0)));
        assert!(a.on_duty("dr.night", "fx-pci", local(3, 0)));
        let al = alert(local(12, 0));
        let now = local(12, 1);
        assert!(a.is_recipient("dr.day", &al, now));
        assert!(!a.is_recipient("dr.night", &al, now), "off duty");
        assert!(
            !a.is_recipient("dr.backup", &al, now),
            "not yet: step 0 is the duty tier"
        );
        let al = al
            .apply(&Event::Escalated(Step {
                step: 1,
                tiers: Ladder::tiers(1),
                at: now,
            }))
            .unwrap();
        assert!(a.is_recipient("dr.backup", &al, now));
        assert!(!a.is_recipient("dr.head", &al, now));
        assert!(a.is_head("dr.head") && !a.is_head("dr.day"));
        assert_eq!(
            a.crossed("K", 6.8, Some("mmol/L")).unwrap().name.as_deref(),
            Some("钾")
        );
        assert!(a.crossed("K", 2.5, Some("MMOL/L")).is_some());
        assert!(a.crossed("K", 4.0, Some("mmol/L")).is_none());
        assert!(
            a.crossed("K", 6.8, Some("mEq/L")).is_none(),
            "another unit is not compared"
        );
        assert!(a.crossed("NA", 200.0, None).is_none());
    }

    #[test]
    fn the_ladder_resumes_from_the_stored_steps_and_never_goes_quiet() {
        let a = alerting();
        let l = a.ladder("fx-pci");
        let t0 = local(12, 0);
        let mut al = alert(t0);
        assert_eq!(l.due(&al, t0 + Duration::seconds(119)), None);
        let s1 = l.due(&al, t0 + Duration::seconds(120)).unwrap();
        assert_eq!(
            (s1.step, s1.tiers.clone()),
            (1, vec![Tier::Duty, Tier::Backup])
        );
        al = al.apply(&Event::Escalated(s1)).unwrap();
        // A restart 10 minutes later: one overdue step now, stamped now; the next from it.
        let late = t0 + Duration::seconds(720);
        let s2 = l.due(&al, late).unwrap();
        assert_eq!((s2.step, s2.at), (2, late));
        assert_eq!(s2.tiers, vec![Tier::Duty, Tier::Backup, Tier::Head]);
        al = al.apply(&Event::Escalated(s2)).unwrap();
        assert_eq!(l.next(&al).unwrap().at, late + Duration::seconds(120));
        assert_eq!(l.next(&al).unwrap().step, 3, "it keeps escalating");
        let closed = al
            .apply(&Event::Cancelled {
                by: "dr.head".into(),
                at: late,
                reason: "wrong patient".into(),
            })
            .unwrap();
        assert_eq!(l.next(&closed), None);
    }

    #[test]
    fn every_problem_is_named() {
        let bad = r#"
[[alert_group]]
id = "g"
institution = "NOPE"
escalate_after_secs = 0

[[alert_group]]
id = "g"
institution = "FXCH"

[[alert_duty]]
reader = "dr.x"
group = "h"

[[alert_route]]
institution = "CHC9"
kind = "stemi"
group = "zzz"

[[critical_threshold]]
code = "K"
low = 7.0
high = 6.5

[[critical_threshold]]
code = "NA"
"#;
        let c: AlertConfig = toml::from_str(bad).unwrap();
        let e = c.validate(|i| i == "FXCH").unwrap_err();
        let all = e.to_string();
        for want in [
            "alert_group g: escalate_after_secs",
            "alert_group g: the id appears twice",
            "unknown institution \"NOPE\"",
            "alert_duty #1 (dr.x at h): unknown alert_group \"h\"",
            "alert_route #1 (CHC9 stemi → zzz): unknown group",
            "unknown institution \"CHC9\"",
            "low 7 must be below high 6.5",
            "critical_threshold #2 (NA): give low, high or both",
        ] {
            assert!(all.contains(want), "missing {want:?} in {all}");
        }
        assert!(
            AlertConfig::default().validate(|_| false).is_ok(),
            "no alerting: valid"
        );
    }
}
