//! Consents issued by the consortium: a registration clerk or an institution's system records
//! the patient's authorisation (the credential the patient presented) and hands out a short
//! code bound to that person, with an expiry and a scope. The code is kept only as a keyed
//! BLAKE3 digest bound to the person; it is compared in constant time.

use chrono::{DateTime, Utc};
use huren_model::ReportKind;
use serde::{Deserialize, Serialize};

use crate::presented::CredentialKind;

/// Characters of a code (Crockford base32: 50 bits), written `XXXXX-XXXXX`.
pub const CODE_LEN: usize = 10;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// What a consent lets a clinician read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsentScope {
    /// Every result of the person.
    All,
    /// Results of one kind only.
    Kind(ReportKind),
}

impl ConsentScope {
    /// `all`, `lab`, `imaging` or `ecg`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::All => "all",
            ConsentScope::Kind(k) => k.as_str(),
        }
    }

    /// Parses [`ConsentScope::as_str`].
    pub fn parse(s: &str) -> Option<ConsentScope> {
        match s {
            "all" | "" => Some(ConsentScope::All),
            "lab" => Some(ConsentScope::Kind(ReportKind::Lab)),
            "imaging" => Some(ConsentScope::Kind(ReportKind::Imaging)),
            "ecg" => Some(ConsentScope::Kind(ReportKind::Ecg)),
            _ => None,
        }
    }

    /// Whether data of `kind` is inside the scope.
    pub fn covers(self, kind: ReportKind) -> bool {
        match self {
            ConsentScope::All => true,
            ConsentScope::Kind(k) => k == kind,
        }
    }
}

impl Serialize for ConsentScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConsentScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConsentScope::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("scope must be all, lab, imaging or ecg"))
    }
}

/// A recorded authorisation. The code itself is never kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Identifier (random, hex).
    pub id: String,
    /// The person's key (`nidk:…` or `local:INST:ID`), as the store names people.
    pub person: String,
    /// The credential the patient presented.
    pub kind: CredentialKind,
    /// What it lets a clinician read.
    pub scope: ConsentScope,
    /// Keyed digest of the code, bound to the person ([`code_digest`]).
    pub code_digest: String,
    /// Keyed digest of the presented credential's value (never the value).
    pub credential_digest: String,
    /// When it was recorded.
    pub issued_at: DateTime<Utc>,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
    /// Who recorded it (principal id).
    pub issued_by: String,
    /// The recording principal's institution.
    pub institution: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a presented code does not authorise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsentFailure {
    /// No consent of this person has this code (or it was recorded for another credential).
    #[error("the authorisation code is not valid for this patient")]
    Invalid,
    /// The code matched an expired consent.
    #[error("the patient's authorisation has expired")]
    Expired,
    /// The code matched a revoked consent.
    #[error("the patient's authorisation was revoked")]
    Revoked,
    /// The code matched, but the consent does not cover this kind of data.
    #[error("the patient's authorisation does not cover this kind of result")]
    OutOfScope,
}

impl ConsentFailure {
    /// Machine-readable code of the refusal.
    pub fn code(self) -> &'static str {
        match self {
            ConsentFailure::Invalid => "PATIENT_AUTHORIZATION_INVALID",
            ConsentFailure::Expired => "PATIENT_AUTHORIZATION_EXPIRED",
            ConsentFailure::Revoked => "PATIENT_AUTHORIZATION_REVOKED",
            ConsentFailure::OutOfScope => "PATIENT_AUTHORIZATION_SCOPE",
        }
    }
}

/// The key codes are digested with, derived from the deployment's secret.
pub fn code_key(secret: &[u8]) -> [u8; 32] {
    blake3::derive_key("huren 2026-12 patient consent code v1", secret)
}

/// A code from 7 random bytes (50 bits used), written `XXXXX-XXXXX`.
pub fn new_code(random: [u8; 7]) -> String {
    let mut bits = random
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut chars = [0u8; CODE_LEN];
    for c in chars.iter_mut().rev() {
        *c = ALPHABET[(bits & 31) as usize];
        bits >>= 5;
    }
    let s: String = chars.iter().map(|b| char::from(*b)).collect();
    format!("{}-{}", &s[..5], &s[5..])
}

/// A typed code in canonical form: upper case, without `-` or spaces, Crockford's look-alikes
/// mapped (`O`→`0`, `I`/`L`→`1`). `None` when it cannot be a code.
pub fn normalise_code(code: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

/// Keyed digest of a (normalised) code for one person, hex.
pub fn code_digest(key: &[u8; 32], person: &str, normalised: &str) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(person.as_bytes());
    h.update(&[0]);
    h.update(normalised.as_bytes());
    h.finalize().to_hex().to_string()
}

/// A consent a verifier accepted: its id and what it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The consent's id (or the external service's reference).
    pub id: String,
    /// What it lets the clinician read.
    pub scope: ConsentScope,
}

/// Verifies a presented code for one person. The built-in one is [`ConsentList`] over the
/// consortium's consent store; a region may plug in its own (e.g. an electronic health card
/// service) — it is asked with the same inputs and answers the same way.
pub trait Verifier: Send + Sync {
    /// The consent the code proves for `person`, or why it proves none. `wanted` is the kind
    /// of data asked for (`None`: whatever the consent covers).
    fn verify(
        &self,
        person: &str,
        kind: CredentialKind,
        code: &str,
        wanted: Option<ReportKind>,
        now: DateTime<Utc>,
    ) -> Result<Verified, ConsentFailure>;
}

/// The built-in verifier: the consents recorded for a person, digested with the deployment's
/// key.
pub struct ConsentList<'a> {
    /// The person's consents (any state).
    pub consents: &'a [Consent],
    /// The digest key ([`code_key`]).
    pub key: &'a [u8; 32],
}

impl Verifier for ConsentList<'_> {
    fn verify(
        &self,
        person: &str,
        kind: CredentialKind,
        code: &str,
        wanted: Option<ReportKind>,
        now: DateTime<Utc>,
    ) -> Result<Verified, ConsentFailure> {
        Consent::verify(self.consents, self.key, person, kind, code, wanted, now).map(|c| {
            Verified {
                id: c.id.clone(),
                scope: c.scope,
            }
        })
    }
}

impl Consent {
    /// Verifies a presented code against the consents of `person` (all of them, so the time
    /// taken does not say which matched): the matching consent, or why none authorises.
    /// `wanted` is the kind of data asked for (`None`: whatever the scope covers).
    pub fn verify<'a>(
        consents: &'a [Consent],
        key: &[u8; 32],
        person: &str,
        kind: CredentialKind,
        code: &str,
        wanted: Option<ReportKind>,
        now: DateTime<Utc>,
    ) -> Result<&'a Consent, ConsentFailure> {
        let Some(norm) = normalise_code(code) else {
            return Err(ConsentFailure::Invalid);
        };
        let presented = blake3::Hash::from_hex(code_digest(key, person, &norm))
            .map_err(|_| ConsentFailure::Invalid)?;
        let mut best: Result<&Consent, ConsentFailure> = Err(ConsentFailure::Invalid);
        for c in consents {
            let Ok(stored) = blake3::Hash::from_hex(&c.code_digest) else {
                continue;
            };
            // blake3::Hash's equality is constant-time.
            let same = stored == presented;
            if !same || c.person != person || c.kind != kind {
                continue;
            }
            let r = if c.revoked_at.is_some_and(|t| t <= now) {
                Err(ConsentFailure::Revoked)
            } else if now >= c.expires_at || now < c.issued_at - chrono::Duration::minutes(5) {
                Err(ConsentFailure::Expired)
            } else if wanted.is_some_and(|k| !c.scope.covers(k)) {
                Err(ConsentFailure::OutOfScope)
            } else {
                Ok(c)
            };
            if r.is_ok() || best.is_err() {
                best = r;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn consent(person: &str, code: &str, scope: ConsentScope, key: &[u8; 32]) -> Consent {
        let t = DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Consent {
            id: "c1".into(),
            person: person.into(),
            kind: CredentialKind::HealthCard,
            scope,
            code_digest: code_digest(key, person, &normalise_code(code).unwrap()),
            credential_digest: String::new(),
            issued_at: t,
            expires_at: t + chrono::Duration::hours(24),
            issued_by: "clerk".into(),
            institution: "FX-ZX".into(),
            revoked_at: None,
        }
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::hours(h)
    }

    #[test]
    fn a_code_verifies_for_its_person_kind_scope_and_time_only() {
        let key = code_key(b"secret");
        let code = new_code([1, 2, 3, 4, 5, 6, 7]);
        let cs = vec![consent(
            "nidk:a",
            &code,
            ConsentScope::Kind(ReportKind::Lab),
            &key,
        )];
        let v = |person: &str, kind, code: &str, wanted, h| {
            Consent::verify(&cs, &key, person, kind, code, wanted, at(h)).map(|c| c.id.clone())
        };
        let hc = CredentialKind::HealthCard;
        assert_eq!(
            v("nidk:a", hc, &code, Some(ReportKind::Lab), 1),
            Ok("c1".into())
        );
        assert_eq!(
            v("nidk:a", hc, &code.to_lowercase(), None, 1),
            Ok("c1".into())
        );
        assert_eq!(
            v("nidk:b", hc, &code, None, 1),
            Err(ConsentFailure::Invalid)
        );
        assert_eq!(
            v("nidk:a", CredentialKind::IdCard, &code, None, 1),
            Err(ConsentFailure::Invalid)
        );
        assert_eq!(v("nidk:a", hc, "x", None, 1), Err(ConsentFailure::Invalid));
        assert_eq!(
            v("nidk:a", hc, &code, None, 25),
            Err(ConsentFailure::Expired)
        );
        assert_eq!(
            v("nidk:a", hc, &code, Some(ReportKind::Ecg), 1),
            Err(ConsentFailure::OutOfScope)
        );
        let other = code_key(b"other secret");
        assert!(Consent::verify(&cs, &other, "nidk:a", hc, &code, None, at(1)).is_err());
    }

    #[test]
    fn a_revoked_consent_no_longer_verifies() {
        let key = code_key(b"secret");
        let code = new_code([9; 7]);
        let mut c = consent("nidk:a", &code, ConsentScope::All, &key);
        c.revoked_at = Some(at(2));
        let cs = [c];
        let hc = CredentialKind::HealthCard;
        assert!(Consent::verify(&cs, &key, "nidk:a", hc, &code, None, at(1)).is_ok());
        assert_eq!(
            Consent::verify(&cs, &key, "nidk:a", hc, &code, None, at(3)).map(|_| ()),
            Err(ConsentFailure::Revoked)
        );
    }

    #[test]
    fn scopes_round_trip() {
        for s in ["all", "lab", "imaging", "ecg"] {
            assert_eq!(ConsentScope::parse(s).map(ConsentScope::as_str), Some(s));
        }
        assert!(ConsentScope::parse("x").is_none());
    }

    proptest! {
        #[test]
        fn codes_are_well_formed_and_normalise_to_themselves(r in any::<[u8; 7]>()) {
            let c = new_code(r);
            prop_assert_eq!(c.len(), CODE_LEN + 1);
            let n = normalise_code(&c).unwrap();
            prop_assert_eq!(n.len(), CODE_LEN);
            prop_assert_eq!(normalise_code(&c.to_lowercase()), Some(n.clone()));
            prop_assert_eq!(normalise_code(&n), Some(n));
        }

        #[test]
        fn a_wrong_code_never_verifies(r in any::<[u8; 7]>(), s in any::<[u8; 7]>()) {
            prop_assume!(r != s);
            let key = code_key(b"k");
            let (a, b) = (new_code(r), new_code(s));
            prop_assume!(normalise_code(&a) != normalise_code(&b));
            let cs = [consent("nidk:p", &a, ConsentScope::All, &key)];
            prop_assert!(Consent::verify(&cs, &key, "nidk:p", CredentialKind::HealthCard, &b, None, at(1)).is_err());
        }
    }
}
