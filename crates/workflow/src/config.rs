//! The reading centres' configuration — `[[centre]]`, `[[reading_route]]`, `[[due_time]]`,
//! `[[roster]]` in `huren.toml` — checked once by [`WorkflowConfig::validate`] into a
//! [`Workflow`] that answers which centre reads what, by when, and who may act.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::task::{CentreId, Kind, Priority, Task};

/// Claim timeout when a centre sets none: a claim idle this long returns to the worklist.
pub const DEFAULT_CLAIM_TIMEOUT_MINUTES: u32 = 15;

/// The time zone of roster windows when a centre sets none.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// The wildcard of a routing rule's institution or a due-time rule's centre: any.
pub const WILDCARD: &str = "*";

/// The built-in due time in minutes for a kind and priority: ECG critical 10, urgent 20,
/// routine 30; imaging critical 30, urgent 60, routine 24 h.
pub fn default_due_minutes(kind: Kind, priority: Priority) -> u32 {
    match (kind, priority) {
        (Kind::Ecg, Priority::Critical) => 10,
        (Kind::Ecg, Priority::Urgent) => 20,
        (Kind::Ecg, Priority::Routine) => 30,
        (Kind::Imaging, Priority::Critical) => 30,
        (Kind::Imaging, Priority::Urgent) => 60,
        (Kind::Imaging, Priority::Routine) => 24 * 60,
    }
}

/// One diagnosis centre (`[[centre]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentreConfig {
    /// Identifier, e.g. `fx-ecg`.
    pub id: String,
    /// Display name, e.g. `奉贤区心电诊断中心`.
    #[serde(default)]
    pub name: String,
    /// The institution hosting it (its code in `[[institution]]`).
    pub institution: String,
    /// A claim idle this long returns to the worklist (default 15).
    #[serde(default)]
    pub claim_timeout_minutes: Option<u32>,
    /// The time zone of its roster windows (default `Asia/Shanghai`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The centre's heads (principal ids): they edit its roster and see its workload.
    #[serde(default)]
    pub heads: Vec<String>,
}

/// Which centre reads an institution's ECGs or studies (`[[reading_route]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// The acquiring institution's code, or `*` for any.
    pub institution: String,
    /// The kind; omitted: any kind.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// The reading centre's id.
    pub centre: String,
}

/// A due time (`[[due_time]]`): how long after creation a task should be signed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueRule {
    /// The centre's id, or `*` / omitted for every centre.
    #[serde(default)]
    pub centre: Option<String>,
    /// The kind.
    pub kind: Kind,
    /// The priority.
    pub priority: Priority,
    /// Minutes after creation (at least 1).
    pub minutes: u32,
}

/// Who reads for which centre, when (`[[roster]]`). Several entries may name the same reader.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// The reader's principal id (a `[[clinician]]` id).
    pub reader: String,
    /// The centre's id.
    pub centre: String,
    /// Weekdays the window starts on (`mon` … `sun`); omitted or empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Start of the window, `HH:MM` local time; omitted together with `to`: all day.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the window, `HH:MM` (exclusive; `24:00` allowed). Earlier than `from`: the
    /// window runs past midnight into the next day (a night shift).
    #[serde(default)]
    pub to: Option<String>,
}

/// The reading-centre part of the configuration, as written. Fields named as the TOML arrays;
/// all default to empty (no centre: no reading tasks).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkflowConfig {
    /// `[[centre]]`.
    #[serde(default, rename = "centre")]
    pub centres: Vec<CentreConfig>,
    /// `[[reading_route]]`.
    #[serde(default, rename = "reading_route")]
    pub routes: Vec<RouteRule>,
    /// `[[due_time]]`.
    #[serde(default, rename = "due_time")]
    pub due: Vec<DueRule>,
    /// `[[roster]]`.
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
}

/// The configuration could not be used: every problem found, each naming the offending entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .issues.join("; "))]
pub struct ConfigError {
    /// The problems (at least one).
    pub issues: Vec<String>,
}

#[derive(Clone, Debug)]
struct Centre {
    name: String,
    institution: String,
    claim_timeout_minutes: u32,
    tz: chrono_tz::Tz,
    heads: Vec<String>,
}

/// A roster window in minutes of the local day: `from..to`, past midnight when `to <= from`.
#[derive(Clone, Debug)]
struct Shift {
    centre: CentreId,
    days: Option<HashSet<Weekday>>,
    from: u32,
    to: u32,
}

/// The validated configuration: answers routing, due times, claim timeouts and the roster.
#[derive(Clone, Debug, Default)]
pub struct Workflow {
    centres: HashMap<CentreId, Centre>,
    routes: HashMap<(Option<String>, Option<Kind>), CentreId>,
    due: HashMap<(Option<CentreId>, Kind, Priority), u32>,
    roster: HashMap<String, Vec<Shift>>,
    /// The roster as written (validated), in order.
    roster_entries: Vec<RosterEntry>,
}

fn parse_hhmm(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

fn wild(s: &str) -> bool {
    s == WILDCARD
}

/// One roster entry as a shift; `None` (and the problems in `issues`) when it is not valid.
fn shift(
    i: usize,
    r: &RosterEntry,
    centres: &HashMap<CentreId, Centre>,
    issues: &mut Vec<String>,
) -> Option<Shift> {
    let name = format!("roster #{} ({} at {})", i + 1, r.reader, r.centre);
    let centre = CentreId(r.centre.clone());
    let before = issues.len();
    if r.reader.trim().is_empty() {
        issues.push(format!("{name}: the reader is empty"));
    }
    if !centres.contains_key(&centre) {
        issues.push(format!("{name}: unknown centre {:?}", r.centre));
    }
    let mut days = HashSet::new();
    for d in &r.days {
        match d.parse::<Weekday>() {
            Ok(d) => {
                days.insert(d);
            }
            Err(_) => issues.push(format!("{name}: unknown day {d:?} (mon … sun)")),
        }
    }
    let (from, to) = match (&r.from, &r.to) {
        (None, None) => (0, 24 * 60),
        (Some(f), Some(t)) => match (parse_hhmm(f), parse_hhmm(t)) {
            (Some(f), Some(t)) if f < 24 * 60 && f != t => (f, t),
            (Some(_), Some(_)) => {
                issues.push(format!(
                    "{name}: the window {f}–{t} is empty (omit from and to for all day)"
                ));
                return None;
            }
            _ => {
                issues.push(format!("{name}: from and to must be HH:MM"));
                return None;
            }
        },
        _ => {
            issues.push(format!("{name}: give both from and to, or neither"));
            return None;
        }
    };
    (issues.len() == before).then(|| Shift {
        centre,
        days: (!days.is_empty()).then_some(days),
        from,
        to,
    })
}

impl WorkflowConfig {
    /// Checks the configuration and builds the [`Workflow`]. `known_institution` answers
    /// whether an institution code is configured (`[[institution]]`); pass `|_| true` to skip
    /// that check. Refused, with every problem found: an empty or duplicate centre id, a
    /// centre hosted by an unknown institution, a zero claim timeout, an unknown time zone; a
    /// route or due time naming an unknown centre or an unknown institution, two rules for the
    /// same institution × kind (or centre × kind × priority), a due time of zero minutes, a
    /// centre whose critical due time is longer than its urgent one (or urgent than routine);
    /// a roster entry with no reader, an unknown centre, an unknown day, a bad or half-given
    /// window, or a window of zero length.
    pub fn validate(
        &self,
        known_institution: impl Fn(&str) -> bool,
    ) -> Result<Workflow, ConfigError> {
        let mut issues = Vec::new();
        let mut w = Workflow::default();

        for c in &self.centres {
            if c.id.trim().is_empty() || wild(&c.id) {
                issues.push(format!(
                    "centre {:?}: the id must be non-empty and not `*`",
                    c.id
                ));
                continue;
            }
            if !known_institution(&c.institution) {
                issues.push(format!(
                    "centre {}: unknown institution {:?}",
                    c.id, c.institution
                ));
            }
            let timeout = c
                .claim_timeout_minutes
                .unwrap_or(DEFAULT_CLAIM_TIMEOUT_MINUTES);
            if timeout == 0 {
                issues.push(format!(
                    "centre {}: claim_timeout_minutes must be at least 1",
                    c.id
                ));
            }
            let tzname = c.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE);
            let tz = match tzname.parse::<chrono_tz::Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    issues.push(format!("centre {}: unknown time zone {tzname:?}", c.id));
                    chrono_tz::Asia::Shanghai
                }
            };
            let centre = Centre {
                name: c.name.clone(),
                institution: c.institution.clone(),
                claim_timeout_minutes: timeout,
                tz,
                heads: c.heads.clone(),
            };
            if w.centres.insert(CentreId(c.id.clone()), centre).is_some() {
                issues.push(format!("centre {}: the id appears twice", c.id));
            }
        }

        for (i, r) in self.routes.iter().enumerate() {
            let name = format!(
                "reading_route #{} ({} {} → {})",
                i + 1,
                r.institution,
                r.kind.map_or("any kind", |k| k.as_str()),
                r.centre
            );
            let centre = CentreId(r.centre.clone());
            if !w.centres.contains_key(&centre) {
                issues.push(format!("{name}: unknown centre {:?}", r.centre));
            }
            let inst = (!wild(&r.institution)).then(|| r.institution.clone());
            if let Some(code) = &inst {
                if !known_institution(code) {
                    issues.push(format!("{name}: unknown institution {code:?}"));
                }
            }
            if w.routes.insert((inst, r.kind), centre).is_some() {
                issues.push(format!(
                    "{name}: another rule already routes this institution and kind"
                ));
            }
        }

        for (i, d) in self.due.iter().enumerate() {
            let centre = d
                .centre
                .as_deref()
                .filter(|c| !wild(c))
                .map(|c| CentreId(c.to_string()));
            let name = format!(
                "due_time #{} ({} {} {})",
                i + 1,
                centre.as_ref().map_or(WILDCARD, |c| c.0.as_str()),
                d.kind,
                d.priority
            );
            if let Some(c) = &centre {
                if !w.centres.contains_key(c) {
                    issues.push(format!("{name}: unknown centre {:?}", c.0));
                }
            }
            if d.minutes == 0 {
                issues.push(format!("{name}: minutes must be at least 1"));
            }
            if w.due
                .insert((centre, d.kind, d.priority), d.minutes)
                .is_some()
            {
                issues.push(format!(
                    "{name}: another rule already sets this centre, kind and priority"
                ));
            }
        }
        let mut ids: Vec<&CentreId> = w.centres.keys().collect();
        ids.sort();
        for c in ids {
            for kind in Kind::ALL {
                let m = |p| w.due_minutes(c, kind, p);
                let (cr, ur, ro) = (
                    m(Priority::Critical),
                    m(Priority::Urgent),
                    m(Priority::Routine),
                );
                if cr > ur || ur > ro {
                    issues.push(format!(
                        "centre {c}: {kind} due times must not grow with urgency \
                         (critical {cr} min, urgent {ur} min, routine {ro} min)"
                    ));
                }
            }
        }

        for (i, r) in self.roster.iter().enumerate() {
            if let Some(shift) = shift(i, r, &w.centres, &mut issues) {
                w.roster.entry(r.reader.clone()).or_default().push(shift);
                w.roster_entries.push(r.clone());
            }
        }

        if issues.is_empty() {
            Ok(w)
        } else {
            Err(ConfigError { issues })
        }
    }
}

impl Workflow {
    /// The centre that reads `kind` from `institution`: the rule for this institution and
    /// kind, else for this institution and any kind, else for any institution and this kind,
    /// else for any institution and kind; none: the report makes no task.
    pub fn route(&self, institution: &str, kind: Kind) -> Option<&CentreId> {
        let inst = Some(institution.to_string());
        [
            (inst.clone(), Some(kind)),
            (inst, None),
            (None, Some(kind)),
            (None, None),
        ]
        .iter()
        .find_map(|k| self.routes.get(k))
    }

    /// The due time in minutes for a centre, kind and priority: the centre's own rule, else a
    /// rule for every centre, else [`default_due_minutes`].
    pub fn due_minutes(&self, centre: &CentreId, kind: Kind, priority: Priority) -> u32 {
        self.due
            .get(&(Some(centre.clone()), kind, priority))
            .or_else(|| self.due.get(&(None, kind, priority)))
            .copied()
            .unwrap_or_else(|| default_due_minutes(kind, priority))
    }

    /// When a task created at `created` should be signed.
    pub fn due_at(
        &self,
        created: DateTime<Utc>,
        centre: &CentreId,
        kind: Kind,
        priority: Priority,
    ) -> DateTime<Utc> {
        created + Duration::minutes(i64::from(self.due_minutes(centre, kind, priority)))
    }

    /// The centre's claim timeout in seconds (for [`crate::Created::claim_timeout_secs`]);
    /// the default for an unknown centre.
    pub fn claim_timeout_secs(&self, centre: &CentreId) -> u32 {
        self.centres
            .get(centre)
            .map_or(DEFAULT_CLAIM_TIMEOUT_MINUTES, |c| c.claim_timeout_minutes)
            * 60
    }

    /// Whether the centre is configured.
    pub fn has_centre(&self, centre: &CentreId) -> bool {
        self.centres.contains_key(centre)
    }

    /// The centre's display name and hosting institution.
    pub fn centre(&self, centre: &CentreId) -> Option<(&str, &str)> {
        self.centres
            .get(centre)
            .map(|c| (c.name.as_str(), c.institution.as_str()))
    }

    /// Whether `reader` is rostered on `centre` at `now` (in the centre's time zone).
    pub fn on_duty(&self, reader: &str, centre: &CentreId, now: DateTime<Utc>) -> bool {
        let Some(c) = self.centres.get(centre) else {
            return false;
        };
        let local = now.with_timezone(&c.tz);
        let minute = local.hour() * 60 + local.minute();
        let day = local.weekday();
        self.roster.get(reader).is_some_and(|shifts| {
            shifts.iter().filter(|s| &s.centre == centre).any(|s| {
                let on = |d: Weekday| s.days.as_ref().is_none_or(|ds| ds.contains(&d));
                if s.from < s.to {
                    on(day) && s.from <= minute && minute < s.to
                } else {
                    (on(day) && minute >= s.from) || (on(day.pred()) && minute < s.to)
                }
            })
        })
    }

    /// The centres whose worklist `reader` sees at `now`: those they are on duty at, sorted.
    pub fn centres_on_duty(&self, reader: &str, now: DateTime<Utc>) -> Vec<&CentreId> {
        let mut v: Vec<&CentreId> = self
            .centres
            .keys()
            .filter(|c| self.on_duty(reader, c, now))
            .collect();
        v.sort();
        v
    }

    /// Whether `who` is a head of `centre` (edits its roster, sees its workload).
    pub fn is_head(&self, who: &str, centre: &CentreId) -> bool {
        self.centres
            .get(centre)
            .is_some_and(|c| c.heads.iter().any(|h| h == who))
    }

    /// The centres `who` heads, sorted.
    pub fn centres_headed(&self, who: &str) -> Vec<&CentreId> {
        let mut v: Vec<&CentreId> = self
            .centres
            .keys()
            .filter(|c| self.is_head(who, c))
            .collect();
        v.sort();
        v
    }

    /// The roster entries of `centre`, as written.
    pub fn roster_of(&self, centre: &CentreId) -> Vec<RosterEntry> {
        self.roster_entries
            .iter()
            .filter(|r| r.centre == centre.0)
            .cloned()
            .collect()
    }

    /// This workflow with `centre`'s roster replaced by `entries` (every other centre's
    /// unchanged). Refused, with every problem, when the centre is unknown, an entry names
    /// another centre, or an entry is not valid (as in [`WorkflowConfig::validate`]).
    pub fn with_roster(
        &self,
        centre: &CentreId,
        entries: &[RosterEntry],
    ) -> Result<Workflow, ConfigError> {
        let mut issues = Vec::new();
        if !self.centres.contains_key(centre) {
            issues.push(format!("unknown centre {:?}", centre.0));
        }
        let mut shifts = Vec::new();
        for (i, r) in entries.iter().enumerate() {
            if r.centre != centre.0 {
                issues.push(format!(
                    "roster #{} ({}): names centre {:?}, not {:?}",
                    i + 1,
                    r.reader,
                    r.centre,
                    centre.0
                ));
                continue;
            }
            if let Some(s) = shift(i, r, &self.centres, &mut issues) {
                shifts.push((r.reader.clone(), s));
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError { issues });
        }
        let mut w = self.clone();
        for list in w.roster.values_mut() {
            list.retain(|s| &s.centre != centre);
        }
        w.roster.retain(|_, l| !l.is_empty());
        for (reader, s) in shifts {
            w.roster.entry(reader).or_default().push(s);
        }
        w.roster_entries.retain(|r| r.centre != centre.0);
        w.roster_entries.extend(entries.iter().cloned());
        Ok(w)
    }

    /// Whether `reader` may act on `task` at `now` (claim, touch, release, sign, amend,
    /// cancel): they are on duty at the task's centre, or they hold its claim (a reader whose
    /// shift ends mid-read may finish, release or let the claim expire). The task's own rules
    /// ([`Task::apply`]) still decide whether the act is a valid transition.
    pub fn may_act(&self, reader: &str, task: &Task, now: DateTime<Utc>) -> bool {
        task.claim_holder(now) == Some(reader) || self.on_duty(reader, &task.centre, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Created, Event, TaskId};

    const TOML: &str = r#"
[[centre]]
id = "fx-ecg"
name = "奉贤区心电诊断中心"
institution = "FXCH"

[[centre]]
id = "fx-img"
name = "影像诊断中心"
institution = "FXCH"
claim_timeout_minutes = 30
heads = ["dr.chief"]

[[reading_route]]
institution = "*"
kind = "ecg"
centre = "fx-ecg"

[[reading_route]]
institution = "H2"
centre = "fx-img"

[[reading_route]]
institution = "H3"
kind = "imaging"
centre = "fx-img"

[[due_time]]
centre = "fx-img"
kind = "imaging"
priority = "routine"
minutes = 720

[[due_time]]
kind = "ecg"
priority = "routine"
minutes = 40

[[roster]]
reader = "dr.wang"
centre = "fx-ecg"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "08:00"
to = "17:30"

[[roster]]
reader = "dr.li"
centre = "fx-ecg"
days = ["fri"]
from = "20:00"
to = "08:00"

[[roster]]
reader = "dr.zhao"
centre = "fx-img"
"#;

    fn known(code: &str) -> bool {
        ["FXCH", "H2", "H3", "CHC1"].contains(&code)
    }

    fn workflow() -> Workflow {
        let c: WorkflowConfig = toml::from_str(TOML).unwrap();
        c.validate(known).unwrap()
    }

    /// A Shanghai local time (UTC+8) on 2026-12-07 (a Monday) + `day` days.
    fn local(day: i64, h: u32, m: u32) -> DateTime<Utc> {
        let base = DateTime::parse_from_rfc3339("2026-12-07T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        base + Duration::days(day) + Duration::minutes(i64::from(h * 60 + m))
    }

    fn issues(toml_text: &str) -> Vec<String> {
        let c: WorkflowConfig = toml::from_str(toml_text).unwrap();
        c.validate(known).unwrap_err().issues
    }

    #[test]
    fn routes_most_specific_first() {
        let w = workflow();
        assert_eq!(w.route("CHC1", Kind::Ecg), Some(&"fx-ecg".into()));
        assert_eq!(w.route("CHC1", Kind::Imaging), None);
        // H2's any-kind rule beats the wildcard ECG rule.
        assert_eq!(w.route("H2", Kind::Ecg), Some(&"fx-img".into()));
        assert_eq!(w.route("H3", Kind::Imaging), Some(&"fx-img".into()));
        assert_eq!(w.route("H3", Kind::Ecg), Some(&"fx-ecg".into()));
        assert_eq!(
            w.centre(&"fx-ecg".into()),
            Some(("奉贤区心电诊断中心", "FXCH"))
        );
        assert!(w.has_centre(&"fx-img".into()));
    }

    #[test]
    fn due_times_defaults_and_overrides() {
        let w = workflow();
        let (e, i) = (CentreId::from("fx-ecg"), CentreId::from("fx-img"));
        assert_eq!(w.due_minutes(&e, Kind::Ecg, Priority::Critical), 10);
        assert_eq!(w.due_minutes(&e, Kind::Ecg, Priority::Routine), 40);
        assert_eq!(w.due_minutes(&i, Kind::Imaging, Priority::Urgent), 60);
        assert_eq!(w.due_minutes(&i, Kind::Imaging, Priority::Routine), 720);
        assert_eq!(w.due_minutes(&e, Kind::Imaging, Priority::Routine), 1440);
        let t0 = local(0, 9, 0);
        assert_eq!(
            w.due_at(t0, &e, Kind::Ecg, Priority::Critical),
            t0 + Duration::minutes(10)
        );
        assert_eq!(w.claim_timeout_secs(&e), 15 * 60);
        assert_eq!(w.claim_timeout_secs(&i), 30 * 60);
    }

    #[test]
    fn built_in_defaults_match_the_issue() {
        assert_eq!(default_due_minutes(Kind::Ecg, Priority::Critical), 10);
        assert_eq!(default_due_minutes(Kind::Ecg, Priority::Routine), 30);
        assert_eq!(default_due_minutes(Kind::Imaging, Priority::Urgent), 60);
        assert_eq!(default_due_minutes(Kind::Imaging, Priority::Routine), 1440);
        for k in Kind::ALL {
            assert!(
                default_due_minutes(k, Priority::Critical)
                    <= default_due_minutes(k, Priority::Urgent)
            );
            assert!(
                default_due_minutes(k, Priority::Urgent)
                    <= default_due_minutes(k, Priority::Routine)
            );
        }
    }

    #[test]
    fn roster_windows() {
        let w = workflow();
        let e = CentreId::from("fx-ecg");
        assert!(w.on_duty("dr.wang", &e, local(0, 8, 0)));
        assert!(w.on_duty("dr.wang", &e, local(0, 17, 29)));
        assert!(!w.on_duty("dr.wang", &e, local(0, 17, 30)));
        assert!(!w.on_duty("dr.wang", &e, local(0, 7, 59)));
        assert!(!w.on_duty("dr.wang", &e, local(5, 9, 0))); // Saturday
        assert!(!w.on_duty("dr.wang", &"fx-img".into(), local(0, 9, 0)));
        // Friday night shift runs into Saturday morning, not Friday morning.
        assert!(w.on_duty("dr.li", &e, local(4, 20, 0)));
        assert!(w.on_duty("dr.li", &e, local(5, 7, 59)));
        assert!(!w.on_duty("dr.li", &e, local(5, 8, 0)));
        assert!(!w.on_duty("dr.li", &e, local(4, 7, 0)));
        // No window: always.
        assert!(w.on_duty("dr.zhao", &"fx-img".into(), local(6, 3, 0)));
        assert!(!w.on_duty("nobody", &e, local(0, 9, 0)));
        assert_eq!(
            w.centres_on_duty("dr.zhao", local(0, 9, 0)),
            [&CentreId::from("fx-img")]
        );
    }

    #[test]
    fn holder_may_finish_after_the_shift() {
        let w = workflow();
        let c = Created {
            id: TaskId("t".into()),
            kind: Kind::Ecg,
            priority: Priority::Routine,
            centre: "fx-ecg".into(),
            institution: "CHC1".into(),
            report: "blake3:p".into(),
            at: local(0, 17, 0),
            due_at: local(0, 17, 30),
            claim_timeout_secs: w.claim_timeout_secs(&"fx-ecg".into()),
        };
        let task = Task::new(&c)
            .apply(&Event::Claimed {
                by: "dr.wang".into(),
                at: local(0, 17, 25),
            })
            .unwrap();
        assert!(w.may_act("dr.wang", &task, local(0, 17, 35)));
        assert!(!w.may_act("dr.wang", &task, local(0, 17, 41)));
        assert!(!w.may_act("dr.zhao", &task, local(0, 17, 35)));

        // Signed: nobody holds a claim any more; an amendment is for a reader on duty at the
        // centre — the signer too only while on duty, another centre's reader never.
        let signed = task
            .apply(&Event::Signed {
                by: "dr.wang".into(),
                at: local(0, 17, 27),
                report: "blake3:s".into(),
            })
            .unwrap();
        assert!(w.may_act("dr.wang", &signed, local(0, 17, 29)));
        assert!(!w.may_act("dr.wang", &signed, local(0, 17, 31)));
        assert!(!w.may_act("dr.zhao", &signed, local(0, 17, 29)));
        assert!(!w.may_act("nobody", &signed, local(0, 17, 29)));
    }

    #[test]
    fn empty_configuration_is_valid() {
        let w = WorkflowConfig::default().validate(|_| false).unwrap();
        assert_eq!(w.route("X", Kind::Ecg), None);
    }

    #[test]
    fn validation_names_the_offender() {
        let all = issues(
            r#"
[[centre]]
id = "a"
institution = "NOPE"
claim_timeout_minutes = 0
time_zone = "Mars/Olympus"

[[centre]]
id = "a"
institution = "FXCH"

[[reading_route]]
institution = "H2"
kind = "ecg"
centre = "b"

[[reading_route]]
institution = "H2"
kind = "ecg"
centre = "a"

[[reading_route]]
institution = "H9"
centre = "a"

[[due_time]]
centre = "a"
kind = "ecg"
priority = "urgent"
minutes = 0

[[due_time]]
centre = "zz"
kind = "ecg"
priority = "urgent"
minutes = 5

[[roster]]
reader = ""
centre = "q"
days = ["funday"]

[[roster]]
reader = "r"
centre = "a"
from = "08:00"

[[roster]]
reader = "r"
centre = "a"
from = "08:00"
to = "08:00"

[[roster]]
reader = "r"
centre = "a"
from = "8h"
to = "9h"
"#,
        );
        let text = all.join("\n");
        for needle in [
            "centre a: unknown institution \"NOPE\"",
            "centre a: claim_timeout_minutes must be at least 1",
            "centre a: unknown time zone \"Mars/Olympus\"",
            "centre a: the id appears twice",
            "reading_route #1 (H2 ecg → b): unknown centre \"b\"",
            "reading_route #2 (H2 ecg → a): another rule already routes",
            "reading_route #3 (H9 any kind → a): unknown institution \"H9\"",
            "due_time #1 (a ecg urgent): minutes must be at least 1",
            "due_time #2 (zz ecg urgent): unknown centre \"zz\"",
            "roster #1 ( at q): the reader is empty",
            "roster #1 ( at q): unknown centre \"q\"",
            "unknown day \"funday\"",
            "roster #2 (r at a): give both from and to",
            "roster #3 (r at a): the window 08:00–08:00 is empty",
            "roster #4 (r at a): from and to must be HH:MM",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let err = ConfigError { issues: all };
        assert!(err.to_string().contains("; "));
    }

    #[test]
    fn due_times_must_follow_urgency() {
        let all = issues(
            r#"
[[centre]]
id = "a"
institution = "FXCH"

[[due_time]]
centre = "a"
kind = "ecg"
priority = "critical"
minutes = 45
"#,
        );
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].starts_with("centre a: ecg due times"), "{all:?}");
    }

    #[test]
    fn unknown_fields_refused() {
        let r: Result<WorkflowConfig, _> =
            toml::from_str("[[centre]]\nid = \"a\"\ninstitution = \"FXCH\"\nclaim_timeout = 5\n");
        assert!(r.is_err());
    }

    #[test]
    fn all_day_window_and_24h_end() {
        let c: WorkflowConfig = toml::from_str(
            r#"
[[centre]]
id = "a"
institution = "FXCH"

[[roster]]
reader = "r"
centre = "a"
days = ["Sun"]
from = "12:00"
to = "24:00"
"#,
        )
        .unwrap();
        let w = c.validate(known).unwrap();
        let a = CentreId::from("a");
        assert!(w.on_duty("r", &a, local(6, 23, 59)));
        assert!(!w.on_duty("r", &a, local(7, 0, 0)));
        assert!(!w.on_duty("r", &a, local(6, 11, 59)));
    }

    #[test]
    fn a_roster_edit_replaces_one_centres_roster_and_is_checked_like_the_file() {
        let w = workflow();
        let img = CentreId("fx-img".into());
        let ecg = CentreId("fx-ecg".into());
        assert!(w.is_head("dr.chief", &img));
        assert!(!w.is_head("dr.chief", &ecg));
        assert!(!w.is_head("dr.zhao", &img));
        assert_eq!(w.centres_headed("dr.chief"), vec![&img]);
        assert_eq!(w.roster_of(&img).len(), 1);
        assert_eq!(w.roster_of(&ecg).len(), 2);
        let monday_noon = local(0, 12, 0);
        assert!(w.on_duty("dr.zhao", &img, monday_noon));
        let entry = |reader: &str, from: Option<&str>, to: Option<&str>| RosterEntry {
            reader: reader.into(),
            centre: "fx-img".into(),
            days: vec![],
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        // dr.zhao off, dr.sun on in the afternoon; fx-ecg's roster untouched.
        let e = w
            .with_roster(&img, &[entry("dr.sun", Some("12:00"), Some("18:00"))])
            .unwrap();
        assert!(!e.on_duty("dr.zhao", &img, monday_noon));
        assert!(e.on_duty("dr.sun", &img, monday_noon));
        assert!(!e.on_duty("dr.sun", &img, local(0, 11, 59)));
        assert_eq!(e.roster_of(&ecg), w.roster_of(&ecg));
        assert!(e.on_duty("dr.wang", &ecg, monday_noon));
        assert_eq!(
            e.roster_of(&img),
            vec![entry("dr.sun", Some("12:00"), Some("18:00"))]
        );
        // Refused, changing nothing: a bad window, another centre's entry, an unknown centre.
        let err = w
            .with_roster(&img, &[entry("dr.sun", Some("12:00"), None)])
            .unwrap_err();
        assert!(err.issues[0].contains("give both from and to"), "{err}");
        let mut other = entry("dr.sun", None, None);
        other.centre = "fx-ecg".into();
        assert!(w.with_roster(&img, &[other]).is_err());
        assert!(w
            .with_roster(&CentreId("nope".into()), &[])
            .unwrap_err()
            .issues[0]
            .contains("unknown centre"));
        // An empty roster: nobody on duty there.
        let none = w.with_roster(&img, &[]).unwrap();
        assert!(!none.on_duty("dr.zhao", &img, monday_noon));
        assert!(none.roster_of(&img).is_empty());
    }
}
