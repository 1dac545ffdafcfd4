//! huren's access policy, pure: who is asking ([`Principal`], [`Role`], bearer [`Tokens`]),
//! what the patient authorised ([`Presented`] from request headers, [`Consent`] codes issued
//! by the consortium, [`Lockout`] after repeated wrong codes) and the [`decide`] function that
//! turns one request into an allow or a refusal with its audit outcome.
//!
//! No I/O and no clock: the server's gate reads consents, the time and the store and writes the
//! audit record; everything it decides is decided here and unit-tested here.

mod consent;
mod decision;
mod failures;
mod lockout;
mod presented;
mod principal;

pub use consent::{
    code_digest, code_key, new_code, normalise_code, Consent, ConsentFailure, ConsentList,
    ConsentScope, Verified, Verifier, CODE_LEN,
};
pub use decision::{decide, Basis, Decision, Denial, Policy, Request, Subject};
pub use failures::{peer_key, AuthFailures, Failure};
pub use lockout::Lockout;
pub use presented::{parse_presented, CredentialKind, HeaderError, Presented, MAX_REASON_CHARS};
pub use principal::{token_hash, Principal, Role, TokenConfig, Tokens};
