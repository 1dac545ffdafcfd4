//! The decision for one request: may this principal have this patient's data, and on what
//! basis? Everything the gate needs to answer and to audit, decided without I/O.

use chrono::{DateTime, Utc};
use huren_model::ReportKind;

use crate::consent::{ConsentFailure, ConsentScope, Verifier};
use crate::presented::Presented;
use crate::principal::{Principal, Role};

/// What a request asks about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// Everything of one person (results, reports, FHIR searches), optionally of one kind.
    Person {
        /// The person's key.
        person: &'a str,
        /// The kind asked for, if one.
        kind: Option<ReportKind>,
    },
    /// One item of data (a report, an original, a study, an instance, a preview).
    Data {
        /// The person it belongs to.
        person: &'a str,
        /// The institution that sent it.
        institution: &'a str,
        /// Its kind.
        kind: ReportKind,
    },
    /// A search without a patient key (QIDO, C-FIND): only the caller's own institution's data.
    OwnInstitution,
    /// Nothing of a patient (statistics, the audit log, recording a consent).
    NoPatient,
}

/// The deployment's policy for the patient's authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A person-wide read needs the patient's authorisation (or break-glass).
    pub required: bool,
    /// Break-glass is allowed for this request's encounter.
    pub break_glass_allowed: bool,
}

/// Everything the decision looks at.
pub struct Request<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// The roles this action is open to.
    pub roles: &'a [Role],
    /// What is asked about.
    pub subject: Subject<'a>,
    /// The patient's authorisation the request presents.
    pub presented: Option<&'a Presented>,
    /// Verifies a presented code for the subject's person.
    pub verifier: &'a dyn Verifier,
    /// Until when tries for the subject's person are locked, if they are.
    pub locked_until: Option<DateTime<Utc>>,
    /// The policy.
    pub policy: Policy,
    /// Now.
    pub now: DateTime<Utc>,
}

/// Why a request is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The data (or the search) is the caller's own institution's.
    OwnInstitution,
    /// A verified consent.
    Consent {
        /// The consent's id.
        id: String,
        /// What it covers (the gate narrows the answer to it).
        scope: ConsentScope,
    },
    /// Break-glass, with its reason.
    BreakGlass {
        /// Why.
        reason: String,
    },
    /// The policy requires no authorisation.
    NotRequired,
    /// The local operator of the command line (owns the store's files).
    LocalOperator,
    /// The action concerns no patient; the role suffices.
    Role,
}

impl Basis {
    /// The name written in the audit record.
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::OwnInstitution => "own_institution",
            Basis::Consent { .. } => "consent",
            Basis::BreakGlass { .. } => "break_glass",
            Basis::NotRequired => "not_required",
            Basis::LocalOperator => "local_operator",
            Basis::Role => "role",
        }
    }

    /// The kinds of data the basis lets the caller see (`None`: all).
    pub fn kind_scope(&self) -> Option<ReportKind> {
        match self {
            Basis::Consent {
                scope: ConsentScope::Kind(k),
                ..
            } => Some(*k),
            _ => None,
        }
    }
}

/// A refusal: the HTTP status, a machine-readable code and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// 403 or 429.
    pub status: u16,
    /// e.g. `NO_PATIENT_AUTHORIZATION`.
    pub code: &'static str,
    /// Human-readable reason (no secrets).
    pub reason: String,
    /// The presented code was wrong for this person (the gate counts it towards a lockout).
    pub wrong_code: bool,
}

impl Denial {
    /// A role that may not do `what` (403 `ROLE`).
    pub fn role(role: Role, what: &str) -> Denial {
        Denial {
            status: 403,
            code: "ROLE",
            reason: format!("role {} may not {what}", role.as_str()),
            wrong_code: false,
        }
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, on this basis.
    Allow(Basis),
    /// Refused.
    Deny(Denial),
}

impl Decision {
    /// The audit record's outcome: `ok` or `denied: REASON`.
    pub fn outcome(&self) -> String {
        match self {
            Decision::Allow(_) => "ok".into(),
            Decision::Deny(d) => format!("denied: {}", d.reason),
        }
    }
}

fn deny(status: u16, code: &'static str, reason: impl Into<String>) -> Decision {
    Decision::Deny(Denial {
        status,
        code,
        reason: reason.into(),
        wrong_code: false,
    })
}

/// Decides one request.
pub fn decide(r: &Request<'_>) -> Decision {
    let p = r.principal;
    if !r.roles.contains(&p.role) {
        return Decision::Deny(Denial::role(p.role, "do this"));
    }
    let (person, kind) = match r.subject {
        Subject::NoPatient => return Decision::Allow(Basis::Role),
        _ if p.role == Role::Operator => return Decision::Allow(Basis::LocalOperator),
        Subject::OwnInstitution => return Decision::Allow(Basis::OwnInstitution),
        Subject::Data { institution, .. }
            if !p.institution.is_empty() && institution == p.institution =>
        {
            return Decision::Allow(Basis::OwnInstitution)
        }
        Subject::Data { person, kind, .. } => (person, Some(kind)),
        Subject::Person { person, kind } => (person, kind),
    };
    match r.presented {
        Some(Presented::BreakGlass { reason }) => {
            if r.policy.break_glass_allowed {
                Decision::Allow(Basis::BreakGlass {
                    reason: reason.clone(),
                })
            } else {
                deny(
                    403,
                    "BREAK_GLASS_NOT_ALLOWED",
                    "break-glass is not allowed for this encounter",
                )
            }
        }
        Some(Presented::Code { kind: ck, code }) => {
            if let Some(until) = r.locked_until.filter(|u| r.now < *u) {
                return deny(
                    429,
                    "PATIENT_AUTHORIZATION_LOCKED",
                    format!(
                        "too many wrong codes for this patient; try again after {}",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                );
            }
            match r.verifier.verify(person, *ck, code, kind, r.now) {
                Ok(c) => Decision::Allow(Basis::Consent {
                    id: c.id,
                    scope: c.scope,
                }),
                Err(f) => Decision::Deny(Denial {
                    status: 403,
                    code: f.code(),
                    reason: f.to_string(),
                    wrong_code: f == ConsentFailure::Invalid,
                }),
            }
        }
        None if !r.policy.required => Decision::Allow(Basis::NotRequired),
        None => deny(
            403,
            "NO_PATIENT_AUTHORIZATION",
            "the patient's authorisation is required",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{code_digest, code_key, normalise_code, Consent, ConsentList};
    use crate::presented::CredentialKind;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn doctor(inst: &str, role: Role) -> Principal {
        Principal {
            id: "dr".into(),
            institution: inst.into(),
            role,
            department: String::new(),
        }
    }

    fn consent(key: &[u8; 32], person: &str, code: &str, scope: ConsentScope) -> Consent {
        Consent {
            id: "c".into(),
            person: person.into(),
            kind: CredentialKind::HealthCard,
            scope,
            code_digest: code_digest(key, person, &normalise_code(code).unwrap()),
            credential_digest: String::new(),
            issued_at: now() - chrono::Duration::hours(1),
            expires_at: now() + chrono::Duration::hours(23),
            issued_by: "clerk".into(),
            institution: "FX-ZX".into(),
            revoked_at: None,
        }
    }

    const READERS: &[Role] = &[Role::Clinician, Role::InstitutionSystem, Role::Operator];
    const CODE: &str = "ABCDE-12345";

    fn run(
        p: &Principal,
        subject: Subject<'_>,
        presented: Option<&Presented>,
        consents: &[Consent],
    ) -> Decision {
        let key = code_key(b"k");
        decide(&Request {
            principal: p,
            roles: READERS,
            subject,
            presented,
            verifier: &ConsentList {
                consents,
                key: &key,
            },
            locked_until: None,
            policy: Policy {
                required: true,
                break_glass_allowed: false,
            },
            now: now(),
        })
    }

    #[test]
    fn the_cases_of_issue_15() {
        let key = code_key(b"k");
        let cs = [consent(&key, "nidk:a", CODE, ConsentScope::All)];
        let dr = doctor("FX-SQ", Role::Clinician);
        let person = Subject::Person {
            person: "nidk:a",
            kind: None,
        };
        // No authorisation: refused (the /reports route answered 200).
        assert!(
            matches!(run(&dr, person.clone(), None, &cs), Decision::Deny(d) if d.code == "NO_PATIENT_AUTHORIZATION")
        );
        // Any non-empty code: refused unless it is the issued one.
        let x = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: "x".into(),
        };
        assert!(
            matches!(run(&dr, person.clone(), Some(&x), &cs), Decision::Deny(d) if d.wrong_code)
        );
        let good = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: CODE.into(),
        };
        assert!(matches!(
            run(&dr, person.clone(), Some(&good), &cs),
            Decision::Allow(Basis::Consent { .. })
        ));
        // Another hospital's original by hash: needs the patient's authorisation.
        let foreign = Subject::Data {
            person: "nidk:a",
            institution: "FX-ZX",
            kind: ReportKind::Lab,
        };
        assert!(matches!(
            run(&dr, foreign.clone(), None, &cs),
            Decision::Deny(_)
        ));
        assert!(matches!(
            run(&dr, foreign, Some(&good), &cs),
            Decision::Allow(_)
        ));
        // Its own institution's data: allowed.
        let own = Subject::Data {
            person: "nidk:a",
            institution: "FX-SQ",
            kind: ReportKind::Lab,
        };
        assert_eq!(
            run(&dr, own, None, &cs),
            Decision::Allow(Basis::OwnInstitution)
        );
        // A privacy officer never reads clinical data.
        let po = doctor("FX-SQ", Role::PrivacyOfficer);
        assert!(
            matches!(run(&po, person, Some(&good), &cs), Decision::Deny(d) if d.code == "ROLE")
        );
    }

    #[test]
    fn break_glass_follows_the_policy_and_locks_stop_tries() {
        let key = code_key(b"k");
        let cs = [consent(&key, "nidk:a", CODE, ConsentScope::All)];
        let dr = doctor("FX-SQ", Role::Clinician);
        let bg = Presented::BreakGlass {
            reason: "STEMI".into(),
        };
        let good = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: CODE.into(),
        };
        let mut req = Request {
            principal: &dr,
            roles: READERS,
            subject: Subject::Person {
                person: "nidk:a",
                kind: None,
            },
            presented: Some(&bg),
            verifier: &ConsentList {
                consents: &cs,
                key: &key,
            },
            locked_until: None,
            policy: Policy {
                required: true,
                break_glass_allowed: false,
            },
            now: now(),
        };
        assert!(matches!(decide(&req), Decision::Deny(d) if d.code == "BREAK_GLASS_NOT_ALLOWED"));
        req.policy.break_glass_allowed = true;
        assert!(
            matches!(decide(&req), Decision::Allow(Basis::BreakGlass { reason }) if reason == "STEMI")
        );
        req.presented = Some(&good);
        req.locked_until = Some(now() + chrono::Duration::minutes(5));
        assert!(matches!(decide(&req), Decision::Deny(d) if d.status == 429));
        req.locked_until = Some(now() - chrono::Duration::minutes(5));
        assert!(matches!(decide(&req), Decision::Allow(_)));
    }

    #[test]
    fn a_kind_scoped_consent_narrows_and_refuses_other_kinds() {
        let key = code_key(b"k");
        let cs = [consent(
            &key,
            "nidk:a",
            CODE,
            ConsentScope::Kind(ReportKind::Lab),
        )];
        let dr = doctor("FX-SQ", Role::Clinician);
        let good = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: CODE.into(),
        };
        match run(
            &dr,
            Subject::Person {
                person: "nidk:a",
                kind: None,
            },
            Some(&good),
            &cs,
        ) {
            Decision::Allow(b) => assert_eq!(b.kind_scope(), Some(ReportKind::Lab)),
            d => panic!("{d:?}"),
        }
        let ecg = Subject::Data {
            person: "nidk:a",
            institution: "FX-ZX",
            kind: ReportKind::Ecg,
        };
        assert!(
            matches!(run(&dr, ecg, Some(&good), &cs), Decision::Deny(d) if d.code == "PATIENT_AUTHORIZATION_SCOPE")
        );
    }

    #[test]
    fn a_regions_own_verifier_decides_codes() {
        struct HealthCardService;
        impl Verifier for HealthCardService {
            fn verify(
                &self,
                person: &str,
                _: CredentialKind,
                code: &str,
                _: Option<ReportKind>,
                _: DateTime<Utc>,
            ) -> Result<crate::Verified, ConsentFailure> {
                if person == "nidk:a" && code == "EHC-OK" {
                    Ok(crate::Verified {
                        id: "ehc:42".into(),
                        scope: ConsentScope::All,
                    })
                } else {
                    Err(ConsentFailure::Invalid)
                }
            }
        }
        let dr = doctor("FX-SQ", Role::Clinician);
        let ok = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: "EHC-OK".into(),
        };
        let bad = Presented::Code {
            kind: CredentialKind::HealthCard,
            code: CODE.into(),
        };
        let mut req = Request {
            principal: &dr,
            roles: READERS,
            subject: Subject::Person {
                person: "nidk:a",
                kind: None,
            },
            presented: Some(&ok),
            verifier: &HealthCardService,
            locked_until: None,
            policy: Policy {
                required: true,
                break_glass_allowed: false,
            },
            now: now(),
        };
        assert!(
            matches!(decide(&req), Decision::Allow(Basis::Consent { id, .. }) if id == "ehc:42")
        );
        req.presented = Some(&bad);
        assert!(matches!(decide(&req), Decision::Deny(d) if d.wrong_code));
    }

    proptest! {
        /// Another institution's data is never allowed to a reader without a verified consent
        /// or an allowed break-glass, whatever the code typed.
        #[test]
        fn foreign_data_needs_a_verified_consent(code in "[A-Z0-9-]{0,12}", inst in "[A-Z]{2}", owner in "[A-Z]{2}") {
            prop_assume!(inst != owner);
            prop_assume!(normalise_code(&code) != normalise_code(CODE));
            let key = code_key(b"k");
            let cs = [consent(&key, "nidk:a", CODE, ConsentScope::All)];
            let dr = doctor(&inst, Role::Clinician);
            let presented = Presented::Code { kind: CredentialKind::HealthCard, code };
            let subject = Subject::Data { person: "nidk:a", institution: &owner, kind: ReportKind::Lab };
            prop_assert!(matches!(run(&dr, subject, Some(&presented), &cs), Decision::Deny(_)));
        }
    }
}
