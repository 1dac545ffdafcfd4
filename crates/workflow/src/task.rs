//! The reading task: its identity, kind, priority, states and the events that move it.
//!
//! A task is the fold of its events ([`Task::replay`]); [`Task::apply`] is the one place a
//! transition is allowed or refused, so the store appends an event only after `apply` accepted
//! it, and replaying the appended events gives the same task again.

use std::cmp::{Ordering, Reverse};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A reading task's identifier (chosen by the store, e.g. from the report's hash).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A diagnosis centre's identifier, as configured in `[[centre]]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CentreId(pub String);

impl fmt::Display for CentreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CentreId {
    fn from(s: &str) -> CentreId {
        CentreId(s.to_string())
    }
}

/// What is read. Lab results are not read at a centre: they have no kind here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A resting 12-lead (or other) ECG (心电).
    Ecg,
    /// An imaging study: CT, MR, DX, US … (影像).
    Imaging,
}

impl Kind {
    /// Every kind, for tables and tests.
    pub const ALL: [Kind; 2] = [Kind::Ecg, Kind::Imaging];

    /// The kind's name as written in configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ecg => "ecg",
            Kind::Imaging => "imaging",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How soon a task must be read. Ordered by urgency: `Critical > Urgent > Routine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Read in turn (常规).
    Routine,
    /// Asked for urgently by the sender (加急).
    Urgent,
    /// Machine-flagged acute MI or another critical finding (危急值): read first.
    Critical,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::Critical, Priority::Urgent, Priority::Routine];

    /// The priority of a new task: `Critical` when the machine (or the sender) flagged a
    /// critical finding, else `Urgent` when the sender asked for it, else `Routine`.
    pub fn of(critical_flag: bool, urgent_requested: bool) -> Priority {
        if critical_flag {
            Priority::Critical
        } else if urgent_requested {
            Priority::Urgent
        } else {
            Priority::Routine
        }
    }

    /// The priority's name as written in configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's state (DICOM UPS procedure step state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting on the worklist (UPS `SCHEDULED`).
    Scheduled,
    /// Claimed by a reader (UPS `IN PROGRESS`, the claim being the UPS lock). The claim is
    /// fresh until `last_touch + claim_timeout`; after that another reader may take it.
    InProgress {
        /// The reader holding the claim (principal id).
        claimed_by: String,
        /// When the current holder claimed it.
        claimed_at: DateTime<Utc>,
        /// The holder's latest sign of life (claim or touch).
        last_touch: DateTime<Utc>,
    },
    /// Signed (UPS `COMPLETED`); terminal.
    Completed {
        /// The signing reader.
        by: String,
        /// When it was signed.
        at: DateTime<Utc>,
        /// The signed report version (`blake3:…`).
        report: String,
    },
    /// Withdrawn (UPS `CANCELED`); terminal.
    Cancelled {
        /// Who cancelled it.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why (never empty).
        reason: String,
    },
}

impl State {
    /// The state's name in the API: `scheduled`, `in_progress`, `completed`, `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Scheduled => "scheduled",
            State::InProgress { .. } => "in_progress",
            State::Completed { .. } => "completed",
            State::Cancelled { .. } => "cancelled",
        }
    }

    /// The FHIR R4 `Task.status` of the state.
    pub fn fhir_status(&self) -> &'static str {
        match self {
            State::Scheduled => "requested",
            State::InProgress { .. } => "in-progress",
            State::Completed { .. } => "completed",
            State::Cancelled { .. } => "cancelled",
        }
    }

    /// Completed or cancelled: no transition leaves it.
    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Completed { .. } | State::Cancelled { .. })
    }
}

/// What a new task is made of (the payload of [`Event::Created`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The task's identifier.
    pub id: TaskId,
    /// ECG or imaging.
    pub kind: Kind,
    /// How soon.
    pub priority: Priority,
    /// The centre that reads it ([`crate::Workflow::route`]).
    pub centre: CentreId,
    /// The acquiring institution (the report's sender; gets the signed report back).
    pub institution: String,
    /// The report to be read (`blake3:…`; the cart's preliminary version or the study).
    pub report: String,
    /// When the task was created (the start of its waiting time).
    pub at: DateTime<Utc>,
    /// When it should be signed ([`crate::Workflow::due_at`]).
    pub due_at: DateTime<Utc>,
    /// The claim timeout in seconds, fixed at creation from the centre's configuration so
    /// replaying the events gives the same answers after the configuration changed.
    pub claim_timeout_secs: u32,
}

/// One recorded change of a task. Every event but `Created` carries the acting principal and
/// the time, both passed in by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The task was made (always the first event, and only the first).
    Created(Created),
    /// A reader claims the task (or an expired claim of another reader; or renews their own).
    Claimed {
        /// The reader.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The holder shows they are still reading: the claim stays fresh.
    Touched {
        /// The holder.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The holder gives the task back to the worklist.
    Released {
        /// The holder.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The holder signs: the signed report version is stored; the task is completed.
    Signed {
        /// The holder.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// The new, signed report version (`blake3:…`).
        report: String,
    },
    /// A signed report was amended: a newer report version, with its reason. The task stays
    /// completed (an amendment is a report version, not a task transition).
    Amended {
        /// Who amended it.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// The amending report version (`blake3:…`).
        report: String,
        /// Why (never empty).
        reason: String,
    },
    /// The task is withdrawn (not read).
    Cancelled {
        /// Who cancelled it.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why (never empty).
        reason: String,
    },
}

/// An amendment of the signed report (see [`Event::Amended`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    /// Who amended it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The amending report version.
    pub report: String,
    /// Why.
    pub reason: String,
}

/// A refused transition: the event does not apply to the task as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The first event of a task must be `Created`.
    #[error("the task has not been created")]
    NotCreated,
    /// `Created` can only be the first event.
    #[error("task {0} already exists")]
    AlreadyCreated(TaskId),
    /// The event names no principal.
    #[error("the event names no reader")]
    NoActor,
    /// Another reader holds a fresh claim.
    #[error("claimed by {holder} until {until}")]
    ClaimHeld {
        /// The holder.
        holder: String,
        /// When the claim expires unless touched.
        until: DateTime<Utc>,
    },
    /// Touch, release or sign by someone who does not hold the claim.
    #[error("{by} does not hold the claim (held by {holder})")]
    NotHolder {
        /// Who tried.
        by: String,
        /// Who holds it.
        holder: String,
    },
    /// Touch, release or sign of a task nobody claimed.
    #[error("the task is not claimed")]
    NotClaimed,
    /// The task is already signed.
    #[error("already completed by {by} at {at}")]
    AlreadyCompleted {
        /// The signer.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The task was cancelled.
    #[error("the task was cancelled")]
    AlreadyCancelled,
    /// Amendment of a task that is not signed.
    #[error("only a signed report can be amended")]
    NotCompleted,
    /// Cancel or amend without a reason.
    #[error("a reason is required")]
    EmptyReason,
    /// Sign or amend naming no report version, or the version already current.
    #[error("the report version is missing or not new")]
    BadReport,
}

/// A reading task: the fold of its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The identifier.
    pub id: TaskId,
    /// ECG or imaging.
    pub kind: Kind,
    /// How soon.
    pub priority: Priority,
    /// The reading centre.
    pub centre: CentreId,
    /// The acquiring institution.
    pub institution: String,
    /// The report being read.
    pub report: String,
    /// When the task was created.
    pub created_at: DateTime<Utc>,
    /// When it should be signed.
    pub due_at: DateTime<Utc>,
    /// The claim timeout in seconds.
    pub claim_timeout_secs: u32,
    /// The state.
    pub state: State,
    /// Amendments of the signed report, oldest first (empty unless completed).
    pub amendments: Vec<Amendment>,
    /// When the claim that led to the signature was taken (completed tasks; the start of
    /// the reading, FHIR `Task.executionPeriod.start`).
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
}

fn actor(by: &str) -> Result<(), TransitionError> {
    if by.trim().is_empty() {
        Err(TransitionError::NoActor)
    } else {
        Ok(())
    }
}

impl Task {
    /// A new, scheduled task.
    pub fn new(c: &Created) -> Task {
        Task {
            id: c.id.clone(),
            kind: c.kind,
            priority: c.priority,
            centre: c.centre.clone(),
            institution: c.institution.clone(),
            report: c.report.clone(),
            created_at: c.at,
            due_at: c.due_at,
            claim_timeout_secs: c.claim_timeout_secs,
            state: State::Scheduled,
            amendments: Vec::new(),
            started_at: None,
        }
    }

    /// The task its events describe; the first must be `Created`. Replaying the same events
    /// always gives the same task (or the same refusal).
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Task, TransitionError> {
        let mut it = events.into_iter();
        let mut task = match it.next() {
            Some(Event::Created(c)) => Task::new(c),
            _ => return Err(TransitionError::NotCreated),
        };
        for e in it {
            task = task.apply(e)?;
        }
        Ok(task)
    }

    /// The claim timeout.
    pub fn claim_timeout(&self) -> Duration {
        Duration::seconds(i64::from(self.claim_timeout_secs))
    }

    /// When the current claim expires unless touched (none unless in progress).
    pub fn claim_expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::InProgress { last_touch, .. } => Some(*last_touch + self.claim_timeout()),
            _ => None,
        }
    }

    /// The reader whose claim is fresh at `now` (none when unclaimed, expired or terminal).
    /// An expired claim shows on the worklist as free.
    pub fn claim_holder(&self, now: DateTime<Utc>) -> Option<&str> {
        match &self.state {
            State::InProgress { claimed_by, .. }
                if self.claim_expires_at().is_some_and(|t| now < t) =>
            {
                Some(claimed_by)
            }
            _ => None,
        }
    }

    /// Scheduled or in progress: on the worklist.
    pub fn is_open(&self) -> bool {
        !self.state.is_terminal()
    }

    /// Open and past its due time at `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.is_open() && now > self.due_at
    }

    /// The countdown to the due time for an open task (negative once overdue); none for a
    /// completed or cancelled one.
    pub fn remaining(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.is_open().then(|| self.due_at - now)
    }

    /// When it was signed and by whom, if it was.
    pub fn signed(&self) -> Option<(&str, DateTime<Utc>)> {
        match &self.state {
            State::Completed { by, at, .. } => Some((by, *at)),
            _ => None,
        }
    }

    /// The report version that counts now: the latest amendment, else the signed version,
    /// else the report being read.
    pub fn current_report(&self) -> &str {
        if let Some(a) = self.amendments.last() {
            return &a.report;
        }
        match &self.state {
            State::Completed { report, .. } => report,
            _ => &self.report,
        }
    }

    /// The reader the task is with: the claim's holder while in progress (fresh or lapsed
    /// but not taken over), the signer once completed; none when scheduled or cancelled
    /// (FHIR `Task.owner`).
    pub fn owner(&self) -> Option<&str> {
        match &self.state {
            State::InProgress { claimed_by, .. } => Some(claimed_by),
            State::Completed { by, .. } => Some(by),
            _ => None,
        }
    }

    /// When the reading started and ended (FHIR `Task.executionPeriod`): from the current
    /// claim (in progress) or the claim that led to the signature, to the signature or the
    /// cancellation.
    pub fn execution_period(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match &self.state {
            State::Scheduled => (None, None),
            State::InProgress { claimed_at, .. } => (Some(*claimed_at), None),
            State::Completed { at, .. } => (self.started_at, Some(*at)),
            State::Cancelled { at, .. } => (None, Some(*at)),
        }
    }

    /// The key the worklist sorts by (see [`worklist_order`]).
    pub fn worklist_key(&self) -> WorklistKey<'_> {
        WorklistKey {
            priority: Reverse(self.priority),
            created_at: self.created_at,
            id: &self.id,
        }
    }

    fn terminal_error(&self) -> Option<TransitionError> {
        match &self.state {
            State::Completed { by, at, .. } => Some(TransitionError::AlreadyCompleted {
                by: by.clone(),
                at: *at,
            }),
            State::Cancelled { .. } => Some(TransitionError::AlreadyCancelled),
            _ => None,
        }
    }

    /// The holder of the claim if `by` holds it (fresh or expired but not yet taken).
    fn check_holder(&self, by: &str) -> Result<(), TransitionError> {
        if let Some(e) = self.terminal_error() {
            return Err(e);
        }
        match &self.state {
            State::InProgress { claimed_by, .. } if claimed_by == by => Ok(()),
            State::InProgress { claimed_by, .. } => Err(TransitionError::NotHolder {
                by: by.to_string(),
                holder: claimed_by.clone(),
            }),
            _ => Err(TransitionError::NotClaimed),
        }
    }

    /// The task after `event`, or why the event does not apply. The rules:
    ///
    /// - `Claimed`: a scheduled task is claimed; the holder re-claiming renews the claim; a
    ///   claim held by another reader is taken over only once it expired (`at` at or after
    ///   `last_touch + claim_timeout`), else [`TransitionError::ClaimHeld`].
    /// - `Touched`, `Released`, `Signed`: only by the holder. An expired claim nobody took
    ///   over is still the holder's (expiry is decided when another reader claims).
    /// - `Signed` completes the task once: a completed task refuses every transition.
    /// - `Cancelled` needs a non-blank reason; scheduled or in progress only.
    /// - `Amended` only of a completed task, with a reason and a new report version; the
    ///   state stays completed.
    pub fn apply(&self, event: &Event) -> Result<Task, TransitionError> {
        let mut next = self.clone();
        match event {
            Event::Created(_) => return Err(TransitionError::AlreadyCreated(self.id.clone())),
            Event::Claimed { by, at } => {
                actor(by)?;
                if let Some(e) = self.terminal_error() {
                    return Err(e);
                }
                next.state = match &self.state {
                    State::InProgress {
                        claimed_by,
                        claimed_at,
                        last_touch,
                    } if claimed_by == by => State::InProgress {
                        claimed_by: by.clone(),
                        claimed_at: *claimed_at,
                        last_touch: (*last_touch).max(*at),
                    },
                    State::InProgress { claimed_by, .. } => {
                        let until = self.claim_expires_at().expect("in progress");
                        if *at < until {
                            return Err(TransitionError::ClaimHeld {
                                holder: claimed_by.clone(),
                                until,
                            });
                        }
                        State::InProgress {
                            claimed_by: by.clone(),
                            claimed_at: *at,
                            last_touch: *at,
                        }
                    }
                    _ => State::InProgress {
                        claimed_by: by.clone(),
                        claimed_at: *at,
                        last_touch: *at,
                    },
                };
            }
            Event::Touched { by, at } => {
                actor(by)?;
                self.check_holder(by)?;
                if let State::InProgress { last_touch, .. } = &mut next.state {
                    *last_touch = (*last_touch).max(*at);
                }
            }
            Event::Released { by, .. } => {
                actor(by)?;
                self.check_holder(by)?;
                next.state = State::Scheduled;
            }
            Event::Signed { by, at, report } => {
                actor(by)?;
                self.check_holder(by)?;
                if report.trim().is_empty() {
                    return Err(TransitionError::BadReport);
                }
                if let State::InProgress { claimed_at, .. } = &self.state {
                    next.started_at = Some(*claimed_at);
                }
                next.state = State::Completed {
                    by: by.clone(),
                    at: *at,
                    report: report.clone(),
                };
            }
            Event::Amended {
                by,
                at,
                report,
                reason,
            } => {
                actor(by)?;
                match &self.state {
                    State::Completed { .. } => {}
                    State::Cancelled { .. } => return Err(TransitionError::AlreadyCancelled),
                    _ => return Err(TransitionError::NotCompleted),
                }
                if reason.trim().is_empty() {
                    return Err(TransitionError::EmptyReason);
                }
                if report.trim().is_empty() || report == self.current_report() {
                    return Err(TransitionError::BadReport);
                }
                next.amendments.push(Amendment {
                    by: by.clone(),
                    at: *at,
                    report: report.clone(),
                    reason: reason.clone(),
                });
            }
            Event::Cancelled { by, at, reason } => {
                actor(by)?;
                if let Some(e) = self.terminal_error() {
                    return Err(e);
                }
                if reason.trim().is_empty() {
                    return Err(TransitionError::EmptyReason);
                }
                next.state = State::Cancelled {
                    by: by.clone(),
                    at: *at,
                    reason: reason.clone(),
                };
            }
        }
        Ok(next)
    }
}

/// The worklist's sort key: most urgent priority first, then longest waiting (oldest
/// `created_at`) first, then the task id — a total order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorklistKey<'a> {
    /// Priority, most urgent first.
    pub priority: Reverse<Priority>,
    /// Creation time, oldest first.
    pub created_at: DateTime<Utc>,
    /// Tie-break.
    pub id: &'a TaskId,
}

/// The worklist's order of two tasks (`Less` = shown first): priority (critical, urgent,
/// routine), then waiting time (oldest first), then id. Sort with
/// `tasks.sort_by(worklist_order)`.
pub fn worklist_order(a: &Task, b: &Task) -> Ordering {
    a.worklist_key().cmp(&b.worklist_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap()
    }

    fn created(id: &str, priority: Priority, at: i64) -> Created {
        Created {
            id: TaskId(id.into()),
            kind: Kind::Ecg,
            priority,
            centre: "ecg-centre".into(),
            institution: "CHC1".into(),
            report: "blake3:prelim".into(),
            at: t(at),
            due_at: t(at + 30),
            claim_timeout_secs: 15 * 60,
        }
    }

    fn task() -> Task {
        Task::new(&created("t1", Priority::Routine, 0))
    }

    fn claim(by: &str, at: i64) -> Event {
        Event::Claimed {
            by: by.into(),
            at: t(at),
        }
    }

    fn sign(by: &str, at: i64) -> Event {
        Event::Signed {
            by: by.into(),
            at: t(at),
            report: format!("blake3:signed-{by}-{at}"),
        }
    }

    #[test]
    fn scheduled_claimed_signed() {
        let a = task().apply(&claim("r1", 1)).unwrap();
        assert_eq!(a.state.as_str(), "in_progress");
        assert_eq!(a.claim_holder(t(2)), Some("r1"));
        let b = a.apply(&sign("r1", 5)).unwrap();
        assert_eq!(b.state.as_str(), "completed");
        assert_eq!(b.state.fhir_status(), "completed");
        assert_eq!(b.signed(), Some(("r1", t(5))));
        assert_eq!(b.current_report(), "blake3:signed-r1-5");
        assert_eq!(task().owner(), None);
        assert_eq!(task().execution_period(), (None, None));
        assert_eq!(a.owner(), Some("r1"));
        assert_eq!(a.execution_period(), (Some(t(1)), None));
        assert_eq!(b.owner(), Some("r1"));
        assert_eq!(b.execution_period(), (Some(t(1)), Some(t(5))));
    }

    #[test]
    fn fresh_claim_is_not_taken_over() {
        let a = task().apply(&claim("r1", 0)).unwrap();
        assert_eq!(
            a.apply(&claim("r2", 14)),
            Err(TransitionError::ClaimHeld {
                holder: "r1".into(),
                until: t(15)
            })
        );
        // A touch keeps it fresh.
        let a = a
            .apply(&Event::Touched {
                by: "r1".into(),
                at: t(10),
            })
            .unwrap();
        assert!(a.apply(&claim("r2", 20)).is_err());
        assert_eq!(a.claim_expires_at(), Some(t(25)));
    }

    #[test]
    fn expired_claim_is_taken_over() {
        let a = task().apply(&claim("r1", 0)).unwrap();
        assert_eq!(a.claim_holder(t(15)), None);
        let b = a.apply(&claim("r2", 15)).unwrap();
        assert_eq!(b.claim_holder(t(16)), Some("r2"));
        // The former holder can no longer sign.
        assert_eq!(
            b.apply(&sign("r1", 17)),
            Err(TransitionError::NotHolder {
                by: "r1".into(),
                holder: "r2".into()
            })
        );
    }

    #[test]
    fn expired_claim_not_taken_is_still_the_holders() {
        let a = task().apply(&claim("r1", 0)).unwrap();
        assert!(a.apply(&sign("r1", 40)).is_ok());
    }

    #[test]
    fn reclaim_by_holder_renews() {
        let a = task().apply(&claim("r1", 0)).unwrap();
        let b = a.apply(&claim("r1", 10)).unwrap();
        match b.state {
            State::InProgress {
                claimed_at,
                last_touch,
                ..
            } => {
                assert_eq!(claimed_at, t(0));
                assert_eq!(last_touch, t(10));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn only_holder_signs_touches_or_releases() {
        assert_eq!(
            task().apply(&sign("r1", 1)),
            Err(TransitionError::NotClaimed)
        );
        let a = task().apply(&claim("r1", 0)).unwrap();
        for e in [
            sign("r2", 1),
            Event::Released {
                by: "r2".into(),
                at: t(1),
            },
            Event::Touched {
                by: "r2".into(),
                at: t(1),
            },
        ] {
            assert!(matches!(
                a.apply(&e),
                Err(TransitionError::NotHolder { .. })
            ));
        }
        let r = a
            .apply(&Event::Released {
                by: "r1".into(),
                at: t(2),
            })
            .unwrap();
        assert_eq!(r.state, State::Scheduled);
        assert!(r.apply(&claim("r2", 3)).is_ok());
    }

    #[test]
    fn never_completed_twice() {
        let a = task()
            .apply(&claim("r1", 0))
            .unwrap()
            .apply(&sign("r1", 1))
            .unwrap();
        assert!(matches!(
            a.apply(&sign("r1", 2)),
            Err(TransitionError::AlreadyCompleted { .. })
        ));
        assert!(matches!(
            a.apply(&claim("r2", 30)),
            Err(TransitionError::AlreadyCompleted { .. })
        ));
    }

    #[test]
    fn cancel_needs_a_reason_and_is_terminal() {
        let c = |reason: &str| Event::Cancelled {
            by: "head".into(),
            at: t(1),
            reason: reason.into(),
        };
        assert_eq!(task().apply(&c("  ")), Err(TransitionError::EmptyReason));
        let x = task().apply(&c("duplicate recording")).unwrap();
        assert_eq!(x.state.as_str(), "cancelled");
        assert!(!x.is_open());
        assert_eq!(
            x.apply(&claim("r1", 2)),
            Err(TransitionError::AlreadyCancelled)
        );
        assert_eq!(x.apply(&c("again")), Err(TransitionError::AlreadyCancelled));
        // In progress can be cancelled; completed cannot.
        let p = task().apply(&claim("r1", 0)).unwrap();
        assert!(p.apply(&c("patient left")).is_ok());
        let s = p.apply(&sign("r1", 1)).unwrap();
        assert!(matches!(
            s.apply(&c("late")),
            Err(TransitionError::AlreadyCompleted { .. })
        ));
    }

    #[test]
    fn amendment_is_a_new_version_not_a_transition() {
        let am = |report: &str, reason: &str| Event::Amended {
            by: "r1".into(),
            at: t(9),
            report: report.into(),
            reason: reason.into(),
        };
        assert_eq!(
            task().apply(&am("blake3:x", "typo")),
            Err(TransitionError::NotCompleted)
        );
        let s = task()
            .apply(&claim("r1", 0))
            .unwrap()
            .apply(&sign("r1", 1))
            .unwrap();
        assert_eq!(
            s.apply(&am("blake3:x", "")),
            Err(TransitionError::EmptyReason)
        );
        assert_eq!(
            s.apply(&am("blake3:signed-r1-1", "same")),
            Err(TransitionError::BadReport)
        );
        let a = s.apply(&am("blake3:x", "wrong lead")).unwrap();
        assert_eq!(a.state, s.state);
        assert_eq!(a.current_report(), "blake3:x");
        assert_eq!(a.amendments.len(), 1);
    }

    #[test]
    fn created_only_first() {
        let c = Event::Created(created("t1", Priority::Routine, 0));
        assert!(matches!(
            task().apply(&c),
            Err(TransitionError::AlreadyCreated(_))
        ));
        assert_eq!(
            Task::replay([&claim("r1", 0)]),
            Err(TransitionError::NotCreated)
        );
        assert_eq!(Task::replay([&c]).unwrap(), task());
    }

    #[test]
    fn blank_actor_refused() {
        assert_eq!(task().apply(&claim(" ", 0)), Err(TransitionError::NoActor));
    }

    #[test]
    fn countdown_and_overdue() {
        let a = task();
        assert_eq!(a.remaining(t(10)), Some(Duration::minutes(20)));
        assert!(!a.is_overdue(t(30)));
        assert!(a.is_overdue(t(31)));
        assert_eq!(a.remaining(t(31)), Some(Duration::minutes(-1)));
        let s = a
            .apply(&claim("r1", 0))
            .unwrap()
            .apply(&sign("r1", 40))
            .unwrap();
        assert!(!s.is_overdue(t(50)));
        assert_eq!(s.remaining(t(50)), None);
    }

    #[test]
    fn worklist_priority_then_waiting() {
        let mut v = [
            Task::new(&created("a", Priority::Routine, 0)),
            Task::new(&created("b", Priority::Critical, 5)),
            Task::new(&created("c", Priority::Urgent, 1)),
            Task::new(&created("d", Priority::Critical, 2)),
            Task::new(&created("e", Priority::Routine, -3)),
        ];
        v.sort_by(worklist_order);
        let ids: Vec<&str> = v.iter().map(|t| t.id.0.as_str()).collect();
        assert_eq!(ids, ["d", "b", "c", "e", "a"]);
    }

    #[test]
    fn events_round_trip_as_json() {
        let e = sign("r1", 1);
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.contains("\"event\":\"signed\""), "{s}");
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
        assert_eq!(Priority::of(true, true), Priority::Critical);
        assert_eq!(Priority::of(false, true), Priority::Urgent);
        assert_eq!(Priority::of(false, false), Priority::Routine);
        assert!(Priority::Critical > Priority::Urgent && Priority::Urgent > Priority::Routine);
    }

    const READERS: [&str; 3] = ["r1", "r2", "r3"];

    fn arb_event() -> impl Strategy<Value = (u8, usize, i64)> {
        (0u8..8, 0usize..3, 0i64..20)
    }

    /// Builds events from (what, who, minutes-after-previous) triples with rising time.
    fn events(spec: &[(u8, usize, i64)]) -> Vec<Event> {
        let mut now = 0;
        let mut out = vec![Event::Created(created("p", Priority::Urgent, 0))];
        for (i, &(what, who, gap)) in spec.iter().enumerate() {
            now += gap;
            let by = READERS[who].to_string();
            let at = t(now);
            out.push(match what {
                0 | 1 => Event::Claimed { by, at },
                2 => Event::Touched { by, at },
                3 => Event::Released { by, at },
                4 => Event::Signed {
                    by,
                    at,
                    report: format!("blake3:{i}"),
                },
                6 | 7 => Event::Amended {
                    by,
                    at,
                    // Sometimes the version already current (refused), sometimes new.
                    report: if i % 3 == 0 {
                        format!("blake3:{}", i.saturating_sub(1))
                    } else {
                        format!("blake3:{i}")
                    },
                    reason: if i % 4 == 1 { " ".into() } else { "r".into() },
                },
                _ => Event::Cancelled {
                    by,
                    at,
                    reason: if i % 2 == 0 {
                        "r".into()
                    } else {
                        String::new()
                    },
                },
            });
        }
        out
    }

    /// Applies the events that are accepted, skipping refused ones (as the server does);
    /// returns the accepted ones.
    fn run(evs: &[Event]) -> (Task, Vec<Event>) {
        let Event::Created(c) = &evs[0] else {
            unreachable!()
        };
        let mut task = Task::new(c);
        let mut ok = vec![evs[0].clone()];
        for e in &evs[1..] {
            if let Ok(n) = task.apply(e) {
                task = n;
                ok.push(e.clone());
            }
        }
        (task, ok)
    }

    proptest! {
        #[test]
        fn never_two_completions(spec in proptest::collection::vec(arb_event(), 0..60)) {
            let (_, ok) = run(&events(&spec));
            let signed = ok.iter().filter(|e| matches!(e, Event::Signed { .. })).count();
            prop_assert!(signed <= 1);
            // Nothing but amendments is accepted after a completion, nothing at all after a
            // cancellation.
            if let Some(i) = ok.iter().position(|e| matches!(e, Event::Signed { .. } | Event::Cancelled { .. })) {
                let only_amendments = ok[i + 1..].iter().all(|e| matches!(e, Event::Amended { .. }));
                prop_assert!(only_amendments);
                if matches!(ok[i], Event::Cancelled { .. }) {
                    prop_assert_eq!(i, ok.len() - 1);
                }
            }
        }

        #[test]
        fn amendments_only_after_signing_with_a_reason(spec in proptest::collection::vec(arb_event(), 0..60)) {
            let evs = events(&spec);
            let Event::Created(c) = &evs[0] else { unreachable!() };
            let mut task = Task::new(c);
            let mut amended = 0;
            for e in &evs[1..] {
                let before = task.clone();
                match task.apply(e) {
                    Ok(n) => {
                        if let Event::Amended { report, reason, .. } = e {
                            // Only a signed task, with a reason, a version not current.
                            let was_signed = matches!(before.state, State::Completed { .. });
                            prop_assert!(was_signed);
                            prop_assert!(!reason.trim().is_empty());
                            prop_assert_ne!(report.as_str(), before.current_report());
                            // The state stays as it was; the new version is current.
                            prop_assert_eq!(&n.state, &before.state);
                            prop_assert_eq!(n.current_report(), report.as_str());
                            amended += 1;
                        }
                        task = n;
                    }
                    Err(_) => prop_assert_eq!(&task, &before),
                }
            }
            prop_assert_eq!(task.amendments.len(), amended);
        }

        #[test]
        fn fresh_claim_never_taken_over(spec in proptest::collection::vec(arb_event(), 0..60)) {
            let evs = events(&spec);
            let Event::Created(c) = &evs[0] else { unreachable!() };
            let mut task = Task::new(c);
            for e in &evs[1..] {
                let before = task.clone();
                if let Ok(n) = task.apply(e) {
                    if let Event::Claimed { by, at } = e {
                        if let Some(h) = before.claim_holder(*at) {
                        // A fresh claim only goes to its holder.
                        prop_assert_eq!(h, by.as_str());
                    }
                    }
                    task = n;
                }
            }
        }

        #[test]
        fn replay_is_deterministic(spec in proptest::collection::vec(arb_event(), 0..60)) {
            let (task, ok) = run(&events(&spec));
            prop_assert_eq!(Task::replay(&ok).unwrap(), task.clone());
            prop_assert_eq!(Task::replay(&ok).unwrap(), task);
        }

        #[test]
        fn worklist_order_is_total_and_follows_priority(
            spec in proptest::collection::vec((0u8..3, -100i64..100), 1..40)
        ) {
            let ps = [Priority::Routine, Priority::Urgent, Priority::Critical];
            let tasks: Vec<Task> = spec
                .iter()
                .enumerate()
                .map(|(i, &(p, at))| Task::new(&created(&format!("t{i}"), ps[p as usize], at)))
                .collect();
            for a in &tasks {
                prop_assert_eq!(worklist_order(a, a), Ordering::Equal);
                for b in &tasks {
                    let ab = worklist_order(a, b);
                    prop_assert_eq!(ab, worklist_order(b, a).reverse());
                    if a.id != b.id {
                        prop_assert_ne!(ab, Ordering::Equal);
                    }
                    if a.priority > b.priority {
                        prop_assert_eq!(ab, Ordering::Less);
                    }
                    if a.priority == b.priority && a.created_at < b.created_at {
                        prop_assert_eq!(ab, Ordering::Less);
                    }
                    for c in &tasks {
                        if ab != Ordering::Greater && worklist_order(b, c) != Ordering::Greater {
                            prop_assert_ne!(worklist_order(a, c), Ordering::Greater);
                        }
                    }
                }
            }
        }
    }
}
