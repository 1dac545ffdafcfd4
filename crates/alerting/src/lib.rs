//! STEMI and critical-value alerts (issue 18), pure: the alert as the fold of its events
//! ([`Alert::apply`]: raised → delivered → read → acknowledged with a decision | cancelled
//! with a reason, after IHE ACM's alert lifecycle), the escalation ladder ([`Ladder`]: who is
//! notified at each step and when the next is due, derived from the stored events so a
//! restart resumes it), and the configuration ([`AlertConfig`]: recipient groups at PCI
//! hospitals with their duty roster, backups and heads; routes from sending institutions;
//! lab thresholds). No I/O and no clock: every instant is an argument. See
//! `docs/alerts.md`.

mod alert;
mod config;
mod notice;

pub use alert::{
    Alert, AlertError, AlertId, AlertKind, Decision, Event, Raised, State, Step, Tier,
};
pub use config::{
    AlertConfig, AlertConfigError, AlertDuty, AlertGroup, AlertRoute, Alerting, Ladder, Threshold,
    DEFAULT_ESCALATE_AFTER_SECS,
};
pub use notice::{notices, Notice};
