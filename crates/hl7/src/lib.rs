//! HL7 v2 for huren: a tolerant, zero-copy parser of our own, ORU^R01 / ADT A01 / A03 / A04 /
//! A08 / A40 mapping to the report model, the ACK builder, the MLLP codec and FHS/BHS batch
//! splitting.
//!
//! We do not use `hl7-parser` 0.3.0 for parsing: it panics on escapes after non-ASCII text,
//! truncates silently on a bad segment, CRLF or a stray MLLP trailer, fails on a UTF-8 BOM,
//! shifts MSH fields with the v2.7 truncation character, ignores `\X..\`, `\H\`, `\N\`,
//! needs hundreds of MB for 1 MiB of `|` and reads timestamps without offset as UTC. Each of
//! those has a regression test in `tests/regressions.rs`.
//!
//! Parsing keeps the decoded text once and indexes segments by byte range; fields,
//! components and repetitions are located on access and unescaped only when read. This
//! crate does no I/O.
//!
//! `Rejection` carries the [`MessageHeader`] boxed (the ACK needs it), so `Result<_,
//! Rejection>` stays small.

mod ack;
mod batch;
mod charset;
mod diag;
mod escape;
mod map;
pub mod mllp;
mod oru;
mod parse;
mod ts;

pub use ack::{build_ack, build_ack_text, AckCode};
pub use batch::split_batch;
pub use charset::Charset;
pub use diag::{Diagnostic, RejectKind, Rejection, Severity};
pub use escape::unescape;
pub use map::{interpret, national_ids, Content, Interpreted, SenderConfig, Visit, VisitEvent};
pub use oru::{build_ecg_oru, build_imaging_oru, build_oru, escape, OruContext};
pub use parse::{peek_sender, Delimiters, Message, MessageHeader, Segment};
pub use ts::{parse_timestamp, TimestampError};

/// Convenience for `huren check`: parses and interprets one message with `cfg` (or
/// [`SenderConfig::default`]: institution `CHECK`, charset from MSH-18 else UTF-8,
/// Asia/Shanghai). Never panics. Message types other than ORU^R01 / ADT are refused with
/// [`RejectKind::Reject`] and code 200 "unsupported message type". The hash stored in
/// `Report.original` is that of `bytes`.
pub fn check(bytes: &[u8], cfg: Option<&SenderConfig>) -> Result<Interpreted, Rejection> {
    let default = SenderConfig::default();
    let cfg = cfg.unwrap_or(&default);
    let msg = Message::parse(bytes, cfg.charset)?;
    interpret(&msg, cfg, huren_model::ContentHash::of(bytes))
}
