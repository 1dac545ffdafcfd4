use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The patient as a report names them. Identity fields only; a national ID is never kept
/// in clear, only as [`national_id_key`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRef {
    /// Institution code that issued `local_id` (the configured sender institution).
    pub institution: String,
    /// The institution's own patient ID (e.g. PID-3 MR number).
    pub local_id: String,
    /// Assigning authority as sent (PID-3.4), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigning_authority: Option<String>,
    /// Keyed hash of the national ID (`nidk:<hex>`), when the message carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national_id_key: Option<String>,
    /// Name as sent (family^given joined with a space for Chinese names without a separator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Administrative sex code as sent (M/F/O/U).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Birth date `YYYY-MM-DD` (or shorter when only year/month were sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

impl PatientRef {
    /// The index key of the institution-local identity: `INSTITUTION:LOCAL_ID`.
    pub fn local_key(&self) -> String {
        format!("{}:{}", self.institution, self.local_id)
    }
}

/// Derives the keyed hash under which a national ID (居民身份证号) is indexed. The raw ID is
/// never stored or logged; `secret` comes from the deployment's configuration. Letters are
/// upper-cased and white space removed first, so `11010119900307123x` and `...123X` agree.
pub fn national_id_key(secret: &str, national_id: &str) -> String {
    let key = blake3::derive_key("huren 2026 national-id key", secret.as_bytes());
    let norm: String = national_id
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!(
        "nidk:{}",
        blake3::keyed_hash(&key, norm.as_bytes()).to_hex()
    )
}

/// A patient identifier as a user writes it: `INSTITUTION:LOCAL_ID` or `nid:NATIONAL_ID`.
#[derive(Clone, PartialEq, Eq)]
pub enum PatientId {
    /// An institution's local ID.
    Local {
        /// Institution code.
        institution: String,
        /// Local patient ID.
        local_id: String,
    },
    /// A national ID in clear, as typed; turn it into a key with [`national_id_key`].
    National(String),
}

// Debug must not print a national ID.
impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatientId::Local { institution, .. } => write!(f, "Local({institution}:…)"),
            PatientId::National(_) => write!(f, "National(…)"),
        }
    }
}

/// Why a patient identifier is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatientIdError {
    /// No `:` separating the namespace from the ID.
    #[error("patient ID must be INSTITUTION:LOCAL_ID or nid:NATIONAL_ID")]
    Form,
    /// An empty part.
    #[error("patient ID has an empty institution or ID")]
    Empty,
}

impl FromStr for PatientId {
    type Err = PatientIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, id) = s.split_once(':').ok_or(PatientIdError::Form)?;
        if ns.is_empty() || id.is_empty() {
            return Err(PatientIdError::Empty);
        }
        if ns == "nid" {
            Ok(PatientId::National(id.to_string()))
        } else {
            Ok(PatientId::Local {
                institution: ns.to_string(),
                local_id: id.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            "FX01:123".parse::<PatientId>(),
            Ok(PatientId::Local {
                institution: "FX01".into(),
                local_id: "123".into()
            })
        );
        assert!(matches!(
            "nid:3101".parse::<PatientId>(),
            Ok(PatientId::National(_))
        ));
        assert_eq!("abc".parse::<PatientId>(), Err(PatientIdError::Form));
        assert_eq!(":1".parse::<PatientId>(), Err(PatientIdError::Empty));
    }

    #[test]
    fn national_key_is_keyed_and_normalised() {
        let a = national_id_key("s1", "11010119900307123x");
        assert_eq!(a, national_id_key("s1", " 11010119900307123X"));
        assert_ne!(a, national_id_key("s2", "11010119900307123X"));
        assert!(!a.contains("110101"));
        let dbg = format!(
            "{:?}",
            "nid:11010119900307123X".parse::<PatientId>().unwrap()
        );
        assert!(!dbg.contains("110101"));
    }
}
