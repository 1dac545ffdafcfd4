//! Who is asking: people by bearer token (stored as SHA-256 in the configuration), systems by
//! client certificate, the local operator of the command line.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads patients' results (with the patient's authorisation), records decisions.
    Clinician,
    /// Reads the audit log (隐私保护专员).
    PrivacyOfficer,
    /// Health commission: reads recognition statistics (卫健委).
    Commission,
    /// An institution's own system (HIS, LIS, PACS) authenticated by its client certificate or
    /// its DICOM AE title; reads results for its clinicians but records no decisions.
    InstitutionSystem,
    /// Registration clerk (挂号/登记): records a patient's authorisation and hands out its code.
    Registrar,
    /// The local operator of the command line (`huren query`), named by the OS user.
    Operator,
}

impl Role {
    /// The role's name as written in audit records and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Commission => "commission",
            Role::InstitutionSystem => "institution_system",
            Role::Registrar => "registrar",
            Role::Operator => "operator",
        }
    }

    /// Roles that read patients' clinical data (with an authorisation decision).
    pub fn reads_patient_data(self) -> bool {
        matches!(
            self,
            Role::Clinician | Role::InstitutionSystem | Role::Operator
        )
    }

    /// Roles that may record a patient's authorisation.
    pub fn issues_consents(self) -> bool {
        matches!(self, Role::Registrar | Role::InstitutionSystem)
    }
}

/// A configured token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Stable identifier, e.g. a staff number.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Institution code.
    pub institution: String,
    /// Role.
    pub role: Role,
    /// Department.
    #[serde(default)]
    pub department: String,
    /// Lower-case hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub token_sha256: String,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Identifier (`cert:INST` for a system by certificate, `ae:AET` for a DICOM peer,
    /// `operator:USER` on the command line).
    pub id: String,
    /// Institution code.
    pub institution: String,
    /// Role.
    pub role: Role,
    /// Department.
    pub department: String,
}

impl Principal {
    /// An institution's system, proven by a client certificate.
    pub fn system(institution: &str) -> Principal {
        Principal {
            id: format!("cert:{institution}"),
            institution: institution.to_string(),
            role: Role::InstitutionSystem,
            department: String::new(),
        }
    }

    /// A DICOM peer acting for its configured institution.
    pub fn dicom_peer(aet: &str, institution: &str) -> Principal {
        Principal {
            id: format!("ae:{aet}"),
            institution: institution.to_string(),
            role: Role::InstitutionSystem,
            department: String::new(),
        }
    }

    /// The local operator of the command line.
    pub fn operator(user: &str) -> Principal {
        Principal {
            id: format!("operator:{user}"),
            institution: String::new(),
            role: Role::Operator,
            department: String::new(),
        }
    }
}

/// Token lookup.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Principal>,
}

/// SHA-256 of a token, lower-case hex.
pub fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

impl Tokens {
    /// Builds the lookup from configured tokens.
    pub fn new(configured: &[TokenConfig]) -> Tokens {
        let mut t = Tokens::default();
        for c in configured {
            t.add(&c.token_sha256, c);
        }
        t
    }

    /// Adds a token by its hash.
    pub fn add(&mut self, sha256: &str, c: &TokenConfig) {
        self.by_hash.insert(
            sha256.to_ascii_lowercase(),
            Principal {
                id: c.id.clone(),
                institution: c.institution.clone(),
                role: c.role,
                department: c.department.clone(),
            },
        );
    }

    /// The principal of a bearer token.
    pub fn lookup(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&token_hash(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_looked_up_by_hash() {
        let c = TokenConfig {
            id: "dr".into(),
            name: String::new(),
            institution: "FX-ZX".into(),
            role: Role::Clinician,
            department: "心内科".into(),
            token_sha256: token_hash("secret"),
        };
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = Tokens::new(&[c]);
        assert_eq!(
            t.lookup("secret").map(|p| p.institution.as_str()),
            Some("FX-ZX")
        );
        assert!(t.lookup("secreT").is_none());
    }

    #[test]
    fn role_names_match_their_serde_names() {
        for r in [
            Role::Clinician,
            Role::PrivacyOfficer,
            Role::Commission,
            Role::InstitutionSystem,
            Role::Registrar,
            Role::Operator,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(
            Principal::system("FX-ZX").role.as_str(),
            "institution_system"
        );
    }
}
