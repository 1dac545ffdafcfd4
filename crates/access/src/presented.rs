//! What a request presents as the patient's authorisation: `X-Patient-Authorization: KIND CODE`
//! (the credential the patient showed when the consent was recorded, and the code the
//! consortium issued for it) or `X-Break-Glass: REASON` (percent-encoded UTF-8).

use serde::{Deserialize, Serialize};

/// The longest break-glass reason kept, in characters; a longer one is refused (400).
pub const MAX_REASON_CHARS: usize = 500;

/// The credential a patient presented when authorising.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Scanned medical-insurance code (医保码).
    MedInsuranceCode,
    /// Health card (健康卡).
    HealthCard,
    /// Resident ID card (身份证).
    IdCard,
}

impl CredentialKind {
    /// The name used in headers and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::MedInsuranceCode => "med_insurance_code",
            CredentialKind::HealthCard => "health_card",
            CredentialKind::IdCard => "id_card",
        }
    }

    /// Parses a name used in headers and JSON.
    pub fn parse(s: &str) -> Option<CredentialKind> {
        match s {
            "med_insurance_code" => Some(CredentialKind::MedInsuranceCode),
            "health_card" => Some(CredentialKind::HealthCard),
            "id_card" => Some(CredentialKind::IdCard),
            _ => None,
        }
    }
}

/// The patient's authorisation as a request presents it (not yet verified).
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// A consent code issued by the consortium for this credential kind.
    Code {
        /// The credential kind the consent was recorded with.
        kind: CredentialKind,
        /// The code as typed (verify with [`crate::Consent::verify`]); never logged.
        code: String,
    },
    /// Emergency access without the patient's authorisation.
    BreakGlass {
        /// Why (free text, at most [`MAX_REASON_CHARS`] characters).
        reason: String,
    },
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Code { kind, .. } => write!(f, "Code({}, <hidden>)", kind.as_str()),
            Presented::BreakGlass { reason } => write!(f, "BreakGlass({reason:?})"),
        }
    }
}

/// A header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// `X-Break-Glass` without a reason, or not UTF-8.
    #[error("X-Break-Glass needs a reason (percent-encoded UTF-8)")]
    EmptyReason,
    /// A reason over [`MAX_REASON_CHARS`].
    #[error("the break-glass reason is longer than {MAX_REASON_CHARS} characters")]
    LongReason,
    /// `X-Patient-Authorization` of an unknown kind.
    #[error("X-Patient-Authorization: med_insurance_code|health_card|id_card CODE")]
    BadKind,
    /// `X-Patient-Authorization` without a code.
    #[error("the authorisation code is empty")]
    EmptyCode,
}

/// Reads the two headers (their raw bytes, if present). Break-glass wins when both are given.
pub fn parse_presented(
    authorization: Option<&[u8]>,
    break_glass: Option<&[u8]>,
) -> Result<Option<Presented>, HeaderError> {
    if let Some(raw) = break_glass {
        let reason = percent_encoding::percent_decode(raw)
            .decode_utf8()
            .map(|s| s.trim().to_string())
            .map_err(|_| HeaderError::EmptyReason)?;
        if reason.is_empty() {
            return Err(HeaderError::EmptyReason);
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(HeaderError::LongReason);
        }
        return Ok(Some(Presented::BreakGlass { reason }));
    }
    let Some(raw) = authorization else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| HeaderError::BadKind)?
        .trim();
    let (kind, code) = text.split_once(' ').unwrap_or((text, ""));
    let kind = CredentialKind::parse(kind).ok_or(HeaderError::BadKind)?;
    let code = code.trim();
    if code.is_empty() {
        return Err(HeaderError::EmptyCode);
    }
    Ok(Some(Presented::Code {
        kind,
        code: code.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_or_name_the_fault() {
        assert_eq!(parse_presented(None, None), Ok(None));
        assert_eq!(
            parse_presented(Some(b"health_card ABCDE-12345"), None),
            Ok(Some(Presented::Code {
                kind: CredentialKind::HealthCard,
                code: "ABCDE-12345".into()
            }))
        );
        assert_eq!(
            parse_presented(Some(b"passport X"), None),
            Err(HeaderError::BadKind)
        );
        assert_eq!(
            parse_presented(Some(b"health_card  "), None),
            Err(HeaderError::EmptyCode)
        );
        assert_eq!(
            parse_presented(
                Some(b"health_card x"),
                Some("%E6%80%A5%E8%AF%8A".as_bytes())
            ),
            Ok(Some(Presented::BreakGlass {
                reason: "急诊".into()
            }))
        );
        assert_eq!(
            parse_presented(None, Some(b"  ")),
            Err(HeaderError::EmptyReason)
        );
        let long = "a".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            parse_presented(None, Some(long.as_bytes())),
            Err(HeaderError::LongReason)
        );
    }

    #[test]
    fn a_code_never_shows_in_debug() {
        let p = Presented::Code {
            kind: CredentialKind::IdCard,
            code: "SECRET".into(),
        };
        assert!(!format!("{p:?}").contains("SECRET"));
    }
}
