//! Recorded patient authorisations (`consents.log`): one JSON line per act — a consent
//! recorded or revoked — appended and `fdatasync`ed before the caller is answered, all of it
//! held in memory by person (consents are few and short-lived). A torn last line (a crash
//! mid-append, never acknowledged) is cut at open; a damaged line elsewhere is refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use huren_access::Consent;
use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
use crate::StoreError;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Record {
        consent: Consent,
    },
    Revoke {
        id: String,
        at: DateTime<Utc>,
        by: String,
    },
}

/// The consents of one store directory.
pub struct ConsentStore {
    log: JsonLines,
    by_person: RwLock<HashMap<String, Vec<Consent>>>,
    person_of: RwLock<HashMap<String, String>>,
}

impl ConsentStore {
    /// Opens (or creates) `dir/consents.log` and reads it.
    pub fn open(dir: impl AsRef<Path>) -> Result<ConsentStore, StoreError> {
        let mut by_person: HashMap<String, Vec<Consent>> = HashMap::new();
        let mut person_of = HashMap::new();
        let (log, _) = JsonLines::open(dir, "consents.log", |l: Line| {
            match l {
                Line::Record { consent } => {
                    person_of.insert(consent.id.clone(), consent.person.clone());
                    by_person
                        .entry(consent.person.clone())
                        .or_default()
                        .push(consent);
                }
                Line::Revoke { id, at, .. } => {
                    if let Some(p) = person_of.get(&id) {
                        for c in by_person.get_mut(p).into_iter().flatten() {
                            if c.id == id {
                                c.revoked_at = Some(at);
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        // A consent that expired more than a day ago can never verify again: it stays in the
        // file (the record of what was authorised), not in memory.
        let horizon = chrono::Utc::now() - chrono::Duration::days(1);
        for list in by_person.values_mut() {
            list.retain(|c| c.expires_at > horizon);
        }
        by_person.retain(|_, list| !list.is_empty());
        person_of.retain(|_, person| by_person.contains_key(person));
        Ok(ConsentStore {
            log,
            by_person: RwLock::new(by_person),
            person_of: RwLock::new(person_of),
        })
    }

    fn append(&self, line: &Line) -> Result<(), StoreError> {
        let mut f = self.log.lock()?;
        self.log.append(&mut f, line)
    }

    /// Records a consent; returns once it is durable.
    pub fn record(&self, consent: Consent) -> Result<(), StoreError> {
        let line = Line::Record { consent };
        self.append(&line)?;
        let Line::Record { consent } = line else {
            return Ok(());
        };
        if let Ok(mut m) = self.person_of.write() {
            m.insert(consent.id.clone(), consent.person.clone());
        }
        if let Ok(mut m) = self.by_person.write() {
            m.entry(consent.person.clone()).or_default().push(consent);
        }
        Ok(())
    }

    /// Revokes a consent by id; `Ok(None)` when there is no such consent, else its person.
    pub fn revoke(
        &self,
        id: &str,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Option<Consent>, StoreError> {
        let Some(person) = self.person_of.read().ok().and_then(|m| m.get(id).cloned()) else {
            return Ok(None);
        };
        self.append(&Line::Revoke {
            id: id.to_string(),
            at,
            by: by.to_string(),
        })?;
        let mut out = None;
        if let Ok(mut m) = self.by_person.write() {
            for c in m.get_mut(&person).into_iter().flatten() {
                if c.id == id {
                    c.revoked_at = Some(at);
                    out = Some(c.clone());
                }
            }
        }
        Ok(out)
    }

    /// Every consent recorded for a person (any state).
    pub fn of_person(&self, person: &str) -> Vec<Consent> {
        self.by_person
            .read()
            .ok()
            .and_then(|m| m.get(person).cloned())
            .unwrap_or_default()
    }

    /// One consent by id.
    pub fn get(&self, id: &str) -> Option<Consent> {
        let person = self.person_of.read().ok()?.get(id).cloned()?;
        self.of_person(&person).into_iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_access::{ConsentScope, CredentialKind};

    fn consent(id: &str, person: &str) -> Consent {
        let t = chrono::Utc::now();
        Consent {
            id: id.into(),
            person: person.into(),
            kind: CredentialKind::HealthCard,
            scope: ConsentScope::All,
            code_digest: "00".repeat(32),
            credential_digest: String::new(),
            issued_at: t,
            expires_at: t + chrono::Duration::hours(24),
            issued_by: "clerk".into(),
            institution: "FX-ZX".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn consents_survive_reopen_and_revocation_sticks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ConsentStore::open(dir.path()).unwrap();
            s.record(consent("a", "nidk:1")).unwrap();
            s.record(consent("b", "nidk:1")).unwrap();
            s.record(consent("c", "nidk:2")).unwrap();
            let at = chrono::Utc::now();
            assert!(s.revoke("b", at, "po").unwrap().is_some());
            assert!(s.revoke("zz", at, "po").unwrap().is_none());
        }
        let s = ConsentStore::open(dir.path()).unwrap();
        let one = s.of_person("nidk:1");
        assert_eq!(one.len(), 2);
        assert!(one.iter().any(|c| c.id == "b" && c.revoked_at.is_some()));
        assert!(one.iter().any(|c| c.id == "a" && c.revoked_at.is_none()));
        assert_eq!(s.of_person("nidk:2").len(), 1);
        assert!(s.get("c").is_some());
    }

    #[test]
    fn consents_long_expired_are_not_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ConsentStore::open(dir.path()).unwrap();
            let mut old = consent("old", "nidk:1");
            old.issued_at = chrono::Utc::now() - chrono::Duration::days(10);
            old.expires_at = chrono::Utc::now() - chrono::Duration::days(9);
            s.record(old).unwrap();
            s.record(consent("new", "nidk:1")).unwrap();
        }
        let s = ConsentStore::open(dir.path()).unwrap();
        let ids: Vec<String> = s.of_person("nidk:1").into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["new"]);
        assert!(s.get("old").is_none());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damage_before_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = ConsentStore::open(dir.path()).unwrap();
            s.record(consent("a", "nidk:1")).unwrap();
        }
        let path = dir.path().join("consents.log");
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"op\":\"record\",\"cons");
        std::fs::write(&path, &torn).unwrap();
        let s = ConsentStore::open(dir.path()).unwrap();
        assert_eq!(s.of_person("nidk:1").len(), 1);
        drop(s);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        let mut bad = b"garbage\n".to_vec();
        bad.extend_from_slice(&whole);
        std::fs::write(&path, &bad).unwrap();
        assert!(ConsentStore::open(dir.path()).is_err());
    }
}
