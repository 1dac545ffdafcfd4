//! Recorded patient authorisations (`consents.log`): one JSON line per act — a consent
//! recorded or revoked — appended and `fdatasync`ed before the caller is answered, all of it
//! held in memory by person (consents are few and short-lived). A torn last line (a crash
//! mid-append, never acknowledged) is cut at open; a damaged line elsewhere is refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use huren_access::Consent;
use serde::{Deserialize, Serialize};

use crate::events::EventSink;
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

/// The acts of `dir/consents.log` as a cluster's table holds them: `(person, act)` in order
/// (a revocation under the person of the consent it revokes; one of a consent the file does
/// not hold is left out).
pub(crate) fn file_events(
    dir: &std::path::Path,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let mut person_of: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for l in crate::jsonl::read_lines::<Line>(dir, "consents.log")? {
        let person = match &l {
            Line::Record { consent } => {
                person_of.insert(consent.id.clone(), consent.person.clone());
                consent.person.clone()
            }
            Line::Revoke { id, .. } => match person_of.get(id) {
                Some(p) => p.clone(),
                None => continue,
            },
        };
        let v = serde_json::to_value(&l)
            .map_err(|e| StoreError::Corrupt(format!("consents.log: {e}")))?;
        out.push((person, v));
    }
    Ok(out)
}

/// The consents of one store directory (`consents.log`), or of a cluster's event table
/// (each person's consents one stream).
pub struct ConsentStore {
    backing: Backing,
    by_person: RwLock<HashMap<String, Vec<Consent>>>,
    person_of: RwLock<HashMap<String, String>>,
}

/// Where the acts are written.
enum Backing {
    File(JsonLines),
    /// A cluster's event table, with each person's stream length as this node knows it; the
    /// mutex keeps this node's appends and refreshes one at a time (consents are few), so an
    /// act is never folded in twice.
    Shared {
        sink: Arc<dyn EventSink>,
        lens: Mutex<HashMap<String, u32>>,
    },
}

/// Folds one act into the maps.
fn fold(
    by_person: &mut HashMap<String, Vec<Consent>>,
    person_of: &mut HashMap<String, String>,
    l: Line,
) {
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
}

/// Drops the consents that expired more than a day ago: they can never verify again. They
/// stay in the file or the table (the record of what was authorised), not in memory.
fn forget_expired(
    by_person: &mut HashMap<String, Vec<Consent>>,
    person_of: &mut HashMap<String, String>,
) {
    let horizon = chrono::Utc::now() - chrono::Duration::days(1);
    for list in by_person.values_mut() {
        list.retain(|c| c.expires_at > horizon);
    }
    by_person.retain(|_, list| !list.is_empty());
    person_of.retain(|_, person| by_person.contains_key(person));
}

impl ConsentStore {
    /// Opens (or creates) `dir/consents.log` and reads it.
    pub fn open(dir: impl AsRef<Path>) -> Result<ConsentStore, StoreError> {
        let mut by_person: HashMap<String, Vec<Consent>> = HashMap::new();
        let mut person_of = HashMap::new();
        let (log, _) = JsonLines::open(dir, "consents.log", |l: Line| {
            fold(&mut by_person, &mut person_of, l);
            Ok(())
        })?;
        forget_expired(&mut by_person, &mut person_of);
        Ok(ConsentStore {
            backing: Backing::File(log),
            by_person: RwLock::new(by_person),
            person_of: RwLock::new(person_of),
        })
    }

    /// The consents of a cluster's event table (each person's stream loaded and folded);
    /// acts go there, and [`ConsentStore::refresh`] brings in a person's acts recorded on
    /// other nodes.
    pub fn shared(sink: Arc<dyn EventSink>) -> Result<ConsentStore, StoreError> {
        let mut by_person: HashMap<String, Vec<Consent>> = HashMap::new();
        let mut person_of = HashMap::new();
        let mut lens: HashMap<String, u32> = HashMap::new();
        for (person, v) in sink.all()? {
            fold(&mut by_person, &mut person_of, line_of(v)?);
            *lens.entry(person).or_default() += 1;
        }
        forget_expired(&mut by_person, &mut person_of);
        Ok(ConsentStore {
            backing: Backing::Shared {
                sink,
                lens: Mutex::new(lens),
            },
            by_person: RwLock::new(by_person),
            person_of: RwLock::new(person_of),
        })
    }

    /// Reads the acts about `person` this node has not seen; whether there were any. A
    /// no-op on the file back end.
    pub fn refresh(&self, person: &str) -> Result<bool, StoreError> {
        let Backing::Shared { sink, lens } = &self.backing else {
            return Ok(false);
        };
        let mut lens = lens.lock().unwrap_or_else(|e| e.into_inner());
        self.catch_up(sink.as_ref(), &mut lens, person)
    }

    /// Refreshes every person whose stream has more acts than this node holds; how many.
    pub fn refresh_all(&self) -> Result<usize, StoreError> {
        let Backing::Shared { sink, lens } = &self.backing else {
            return Ok(0);
        };
        let mut n = 0;
        for (person, len) in sink.lengths()? {
            let mut lens = lens.lock().unwrap_or_else(|e| e.into_inner());
            if len > lens.get(&person).copied().unwrap_or(0)
                && self.catch_up(sink.as_ref(), &mut lens, &person)?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Folds what `person`'s stream has after this node's length of it (the caller holds
    /// the lengths' lock).
    fn catch_up(
        &self,
        sink: &dyn EventSink,
        lens: &mut HashMap<String, u32>,
        person: &str,
    ) -> Result<bool, StoreError> {
        let n = lens.get(person).copied().unwrap_or(0);
        let missed = sink.stream(person, n)?;
        if missed.is_empty() {
            return Ok(false);
        }
        let k = missed.len() as u32;
        for v in missed {
            self.fold_in(line_of(v)?);
        }
        lens.insert(person.to_string(), n + k);
        Ok(true)
    }

    fn fold_in(&self, l: Line) {
        if let (Ok(mut b), Ok(mut p)) = (self.by_person.write(), self.person_of.write()) {
            fold(&mut b, &mut p, l);
        }
    }

    /// Makes an act about `person` durable, then folds it in.
    fn append(&self, person: &str, line: Line) -> Result<(), StoreError> {
        match &self.backing {
            Backing::File(log) => {
                let mut f = log.lock()?;
                log.append(&mut f, &line)?;
            }
            Backing::Shared { sink, lens } => {
                let value = serde_json::to_value(&line)
                    .map_err(|e| StoreError::Corrupt(format!("consent: {e}")))?;
                let mut lens = lens.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let n = lens.get(person).copied().unwrap_or(0);
                    if sink.append(person, n + 1, std::slice::from_ref(&value))? {
                        lens.insert(person.to_string(), n + 1);
                        break;
                    }
                    // Another node recorded an act about this person first: take it in.
                    self.catch_up(sink.as_ref(), &mut lens, person)?;
                }
            }
        }
        self.fold_in(line);
        Ok(())
    }

    /// Records a consent; returns once it is durable.
    pub fn record(&self, consent: Consent) -> Result<(), StoreError> {
        let person = consent.person.clone();
        self.append(&person, Line::Record { consent })
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
        self.append(
            &person,
            Line::Revoke {
                id: id.to_string(),
                at,
                by: by.to_string(),
            },
        )?;
        Ok(self.of_person(&person).into_iter().find(|c| c.id == id))
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

fn line_of(v: serde_json::Value) -> Result<Line, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("consent: {e}")))
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
