//! The clinician's decision on a verdict and its invariants (RECOGNITION.md §5).

use serde::{Deserialize, Serialize};

use crate::rules::Rules;
use crate::verdict::{Level, ReasonCode, Severity, Verdict};

/// What the clinician did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// 互认: the prior result is used.
    Accept,
    /// Used at the clinician's discretion although only reference.
    AcceptDiscretionary,
    /// 不互认: the test is repeated.
    Reject,
}

/// A decision as submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Action.
    pub action: Action,
    /// Exception codes (E1–E6) for a repeat.
    #[serde(default)]
    pub exception_codes: Vec<String>,
    /// Free text (mandatory with E6), at most `free_text_max_chars` characters.
    #[serde(default)]
    pub other_text: Option<String>,
    /// The patient was told why, and what it means (告知).
    #[serde(default)]
    pub patient_informed: bool,
}

/// Why a decision is refused (answered 422 by the API).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// Rejecting a recognisable result needs an exception code.
    #[error("rejecting a recognisable result needs at least one exception code (E1–E6)")]
    ExceptionCodeRequired,
    /// Unknown exception code.
    #[error("unknown exception code `{code}`")]
    UnknownExceptionCode {
        /// The code.
        code: String,
    },
    /// The code needs free text.
    #[error("exception code `{code}` needs other_text")]
    OtherTextRequired {
        /// The code.
        code: String,
    },
    /// Free text too long.
    #[error("other_text has {len} characters; at most {max}")]
    OtherTextTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A repeat needs the patient informed.
    #[error("a repeat (reject) needs patient_informed = true")]
    PatientNotInformed,
    /// Accept is only for recognisable results.
    #[error("accept is only possible for a recognisable result; this one is {level:?}")]
    NotRecognizable {
        /// The verdict level.
        level: Level,
    },
    /// Discretionary acceptance is not allowed for this verdict.
    #[error("accept_discretionary is not allowed here: {why}")]
    DiscretionaryNotAllowed {
        /// Why.
        why: String,
    },
}

impl DecisionError {
    /// Stable code for API answers, e.g. `EXCEPTION_CODE_REQUIRED`.
    pub fn code(&self) -> &'static str {
        match self {
            DecisionError::ExceptionCodeRequired => "EXCEPTION_CODE_REQUIRED",
            DecisionError::UnknownExceptionCode { .. } => "UNKNOWN_EXCEPTION_CODE",
            DecisionError::OtherTextRequired { .. } => "OTHER_TEXT_REQUIRED",
            DecisionError::OtherTextTooLong { .. } => "OTHER_TEXT_TOO_LONG",
            DecisionError::PatientNotInformed => "PATIENT_NOT_INFORMED",
            DecisionError::NotRecognizable { .. } => "NOT_RECOGNIZABLE",
            DecisionError::DiscretionaryNotAllowed { .. } => "DISCRETIONARY_NOT_ALLOWED",
        }
    }
}

/// Reasons under which a reference-only result may still be accepted at the clinician's
/// discretion.
pub const DISCRETIONARY_REASONS: &[ReasonCode] = &[
    ReasonCode::TierDiscretionary,
    ReasonCode::OutOfScope,
    ReasonCode::ItemNotInCatalogue,
];

/// Checks a decision against the verdict it answers.
pub fn validate_decision(
    verdict: &Verdict,
    decision: &Decision,
    rules: &Rules,
) -> Result<(), DecisionError> {
    let max = rules.file.free_text_max_chars;
    if let Some(t) = &decision.other_text {
        let len = t.chars().count();
        if len > max {
            return Err(DecisionError::OtherTextTooLong { len, max });
        }
    }
    for code in &decision.exception_codes {
        let Some(known) = rules.exception_codes().iter().find(|e| &e.code == code) else {
            return Err(DecisionError::UnknownExceptionCode { code: code.clone() });
        };
        let has_text = decision
            .other_text
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
        if known.requires_text && !has_text {
            return Err(DecisionError::OtherTextRequired { code: code.clone() });
        }
    }
    match decision.action {
        Action::Accept => {
            if verdict.level != Level::Recognizable {
                return Err(DecisionError::NotRecognizable {
                    level: verdict.level,
                });
            }
        }
        Action::AcceptDiscretionary => {
            if verdict.level != Level::ReferenceOnly {
                return Err(DecisionError::DiscretionaryNotAllowed {
                    why: format!("the verdict is {:?}", verdict.level),
                });
            }
            if let Some(r) = verdict.reasons.iter().find(|r| {
                matches!(r.severity, Severity::Refer | Severity::Block)
                    && !DISCRETIONARY_REASONS.contains(&r.code)
            }) {
                return Err(DecisionError::DiscretionaryNotAllowed {
                    why: format!("reason {}", r.code),
                });
            }
        }
        Action::Reject => {
            if verdict.level == Level::Recognizable && decision.exception_codes.is_empty() {
                return Err(DecisionError::ExceptionCodeRequired);
            }
            if !decision.patient_informed {
                return Err(DecisionError::PatientNotInformed);
            }
        }
    }
    Ok(())
}
