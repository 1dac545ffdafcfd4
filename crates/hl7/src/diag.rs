use serde::Serialize;

use crate::MessageHeader;

/// Severity of a diagnostic (HL7 ERR-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The message cannot be accepted.
    Error,
    /// Accepted; something was odd or coerced.
    Warning,
}

/// One finding about a message, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where: `OBX[3]-5` (third OBX, field 5), `MSH-18`, `line 4`, `byte 120`.
    pub location: String,
    /// Segment ID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// 1-based segment line within the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<usize>,
    /// HL7 table 0357 code: 100 segment sequence, 101 required field missing, 102 data type,
    /// 103 table value not found, 200 unsupported message type, 201 unsupported event,
    /// 203 unsupported version, 204 unknown key identifier, 207 application internal error.
    pub code: u16,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about field `field` of the `nth` (1-based) segment `seg` at message line `line`.
    pub fn at(
        severity: Severity,
        seg: &str,
        nth: usize,
        line: usize,
        field: usize,
        code: u16,
        message: impl Into<String>,
    ) -> Self {
        let location = if field == 0 {
            format!("{seg}[{nth}]")
        } else if seg == "MSH" {
            format!("MSH-{field}")
        } else {
            format!("{seg}[{nth}]-{field}")
        };
        Diagnostic {
            severity,
            location,
            segment: Some(seg.to_string()),
            line: Some(line),
            field: (field > 0).then_some(field),
            code,
            message: message.into(),
        }
    }

    /// A diagnostic about the message as a whole or a byte position.
    pub fn general(
        severity: Severity,
        location: impl Into<String>,
        code: u16,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            location: location.into(),
            segment: None,
            line: None,
            field: None,
            code,
            message: message.into(),
        }
    }
}

/// How a refused message is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectKind {
    /// AE / CE: the content has an error.
    Error,
    /// AR / CR: the message cannot be processed at all (header, type, version, charset, sender).
    Reject,
}

/// A message that was not accepted, with every reason found.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.summary())]
pub struct Rejection {
    /// The header, when it could be read (for the ACK).
    pub header: Option<Box<MessageHeader>>,
    /// At least one error; warnings may follow.
    pub diagnostics: Vec<Diagnostic>,
    /// AE or AR.
    pub kind: RejectKind,
}

impl Rejection {
    pub(crate) fn new(header: Option<MessageHeader>, kind: RejectKind, d: Diagnostic) -> Self {
        Rejection {
            header: header.map(Box::new),
            diagnostics: vec![d],
            kind,
        }
    }

    fn summary(&self) -> String {
        match self
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
            .or(self.diagnostics.first())
        {
            Some(d) => format!("{}: {}", d.location, d.message),
            None => "rejected".to_string(),
        }
    }
}
