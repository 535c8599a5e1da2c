//! Errors as a client sees them: RFC 9457 problem details, served as
//! `application/problem+json`. Every error of every service has this one
//! shape, whatever went wrong, so that a client reads a failure the same way
//! everywhere: a status, its title, and a `detail` in words a person can act
//! on. Never an HTML error page, never an empty body.

use std::fmt;

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder, ResponseError};
use serde::Serialize;

/// An error as a client sees it (RFC 9457 problem details).
#[derive(Debug, Serialize)]
pub struct Problem {
    /// `about:blank` means "nothing more to say than the status code", whose
    /// reason phrase is then the title (RFC 9457, section 4.2.1).
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    pub(crate) status: u16,
    /// What went wrong this time, in words a person can act on.
    pub(crate) detail: String,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header that the status code calls for, such as `Allow` on 405.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(self)
    }
}

/// A handler can answer with a `Problem` directly.
impl Responder for Problem {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}
