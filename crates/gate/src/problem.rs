//! RFC 9457 problem answers (`application/problem+json`): every refusal and failure of an
//! HTTP request.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An RFC 9457 problem answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    code: Option<String>,
    headers: Vec<(header::HeaderName, axum::http::HeaderValue)>,
}

impl Problem {
    /// A problem with a status, a short title and a detail.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            code: None,
            headers: Vec::new(),
        }
    }

    /// Adds a machine-readable `code` member (e.g. `EXCEPTION_CODE_REQUIRED`).
    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers
            .push((name, axum::http::HeaderValue::from_static(value)));
        self
    }

    /// Adds a response header with a value made at run time (dropped if it is not a valid
    /// header value).
    pub fn header_value(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(c) = self.code {
            body["code"] = json!(c);
        }
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl From<tokio::task::JoinError> for Problem {
    /// A blocking task that panicked or was cancelled: 500, never a hung request.
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "blocking task failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            e.to_string(),
        )
    }
}

impl From<huren_store::StoreError> for Problem {
    fn from(e: huren_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in HTTP request");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store error",
            "the store could not answer; see server log",
        )
    }
}

/// A JSON body that could not be taken: 413 when it is over the route's limit, else 400.
pub fn bad_body(e: axum::extract::rejection::JsonRejection) -> Problem {
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    Problem::new(status, "bad body", e.body_text())
}
