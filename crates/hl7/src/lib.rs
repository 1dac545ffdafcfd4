//! HL7 v2 for huren: a tolerant, zero-copy parser of our own, ORU^R01 / ADT A08 / A40 mapping
//! to the report model, the ACK builder, the MLLP codec and FHS/BHS batch splitting.
//!
//! We do not use `hl7-parser` 0.3.0 for parsing (see `docs/hl7.md`): it panics, truncates
//! silently or misreads real messages in ways that must never reach users. This crate does
//! no I/O.

mod ack;
mod batch;
mod charset;
mod diag;
mod escape;
mod map;
pub mod mllp;
mod parse;
mod ts;

pub use ack::{build_ack, AckCode};
pub use batch::split_batch;
pub use charset::Charset;
pub use diag::{Diagnostic, RejectKind, Rejection, Severity};
pub use escape::unescape;
pub use map::{interpret, Content, Interpreted, SenderConfig};
pub use parse::{peek_sender, Delimiters, Message, MessageHeader, Segment};
pub use ts::{parse_timestamp, TimestampError};
