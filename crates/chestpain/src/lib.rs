//! Chest-pain-centre cases, pure: the case as the fold of its events ([`Case::apply`]:
//! opened from a STEMI alert, milestones stamped once and never changed, referral and its
//! cancellation), the KPIs ([`Kpi`]: first ECG → diagnosis, alert → acknowledgement, FMC →
//! first ECG, door-in → door-out) with their [`Stats`] and monthly [`report`], and the
//! export for the China Chest Pain Center data platform ([`export_csv`], [`export_rows`]).
//! No I/O, no clock, no store: every instant is an argument. See `docs/chest-pain.md`.

mod case;
mod export;
mod kpi;

pub use case::{
    CancelledReferral, Case, CaseError, CaseEvent, Milestone, Referral, Source, Stamp,
    FUTURE_TOLERANCE_SECS,
};
pub use export::{export_columns, export_csv, export_rows, Column, ExportError};
pub use kpi::{
    report, Kpi, KpiReport, KpiStats, Negative, Period, Stats, ThresholdError, Thresholds,
    NO_RESPONDER,
};
