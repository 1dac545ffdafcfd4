//! The mutual-recognition (互认) rules engine.
//!
//! `evaluate(context, candidate, rules) -> Verdict` implements `RECOGNITION.md`: every check
//! runs and every failure is collected, the most severe decides, anything not configured fails
//! closed, `now` is an input and nothing here does I/O. Rules are versioned data
//! ([`Rules::from_toml`]); the clinician's decision is a separate act checked by
//! [`validate_decision`].

mod decision;
mod evaluate;
mod input;
mod rules;
mod verdict;

pub use decision::{validate_decision, Action, Decision, DecisionError, DISCRETIONARY_REASONS};
pub use evaluate::{evaluate, evaluate_all, resolve_item, stable_until, stable_until_all};
pub use input::{
    AuthorizationKind, Candidate, CandidateStatus, Category, ClinicalFlags, Closure, Critical,
    Demographics, EncounterKind, IdentityMethod, Images, IntendedOrder, PatientAuthorization,
    QueryContext, Sex, Times,
};
pub use rules::{
    default_exception_codes, Anchor, AuthorizationPolicy, Bypass, Consortium, CriticalOpenPolicy,
    ExceptionCode, Institution, Item, QcEvidence, QcResult, Region, RegionGroup, Rules, RulesError,
    RulesFile, RulesIssue, Scope, ScopeLabel, ScopeLevel, Tier, TierMatrix,
};
pub use verdict::{Evidence, Level, Reason, ReasonCode, ReorderRequirements, Severity, Verdict};
