//! The reading centre's workflow (issue 17), pure: which diagnosis centre reads an
//! institution's ECGs or studies ([`Workflow::route`]), how soon ([`Workflow::due_at`],
//! [`Priority`]), the reading task's states and transitions as an event-sourced record
//! ([`Task::apply`]: scheduled → in progress → completed | cancelled, after DICOM UPS and IHE
//! Remote Reading Workflow), the worklist's order ([`worklist_order`]), who may act on a task
//! ([`Workflow::may_act`], from the [`RosterEntry`] roster) and the centre's workload figures
//! ([`workload`]).
//!
//! No I/O and no clock: every instant is an argument. The store records the events, the
//! server reads the time and the configuration; every rule is decided and tested here. See
//! `docs/workflow.md`.

pub mod catalogue;
mod config;
mod stats;
mod task;

pub use config::{
    default_due_minutes, CentreConfig, ConfigError, DueRule, RosterEntry, RouteRule, Workflow,
    WorkflowConfig, DEFAULT_CLAIM_TIMEOUT_MINUTES, DEFAULT_TIME_ZONE, WILDCARD,
};
pub use stats::{workload, Figures, Workload};
pub use task::{
    worklist_order, Amendment, CentreId, Created, Event, Kind, Priority, State, Task, TaskId,
    TransitionError, WorklistKey,
};
