//! Who is asking: clinicians by bearer token (stored as SHA-256 in the configuration), with
//! an institution, a role and a department.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads patients' results, records decisions.
    Clinician,
    /// Reads the audit log (隐私保护专员).
    PrivacyOfficer,
    /// Health commission: reads recognition statistics (卫健委).
    Commission,
    /// An institution's own system (HIS, LIS) authenticated by its client certificate; reads
    /// results for its clinicians but records no decisions.
    InstitutionSystem,
}

/// A configured clinician token.
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
    /// Identifier.
    pub id: String,
    /// Institution code.
    pub institution: String,
    /// Role.
    pub role: Role,
    /// Department.
    pub department: String,
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

/// A fresh random token (32 bytes, hex).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
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
        assert_eq!(t.lookup("secret").unwrap().institution, "FX-ZX");
        assert!(t.lookup("secreT").is_none());
        assert_eq!(new_token().unwrap().len(), 64);
    }
}
