//! Calls to other services. Each goes out through one function,
//! [`Upstream::call`], with a deadline, and comes back as the answer or as a
//! [`CallError`] that says what went wrong; [`Upstream::problem`] turns that
//! into what our own client sees. One way out means one place to look when a
//! call fails, and one place for each later pattern to plug in.

use std::fmt;
use std::io;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::error::{ConnectError, JsonPayloadError, PayloadError, SendRequestError};
use awc::{ClientRequest, ClientResponse};
use serde_json::Value;
use tracing::warn;

use crate::guards::ForwardedBody;
use crate::platform::Problem;

/// An HTTP client for calls to other services. Create one per worker
/// thread and reuse it: it keeps connections open between calls, which is
/// much cheaper than a new connection (and client) per request.
pub fn http_client() -> awc::Client {
    // No client-wide timeout: each call has its own deadline (`Upstream`).
    awc::Client::builder().disable_timeout().finish()
}

/// A service that this one calls over HTTP: its name (for messages), where
/// it answers, and how long a call to it may take, from connecting to the
/// last byte of the answer. Without that deadline, one stuck service would
/// leave every caller stuck too.
#[derive(Clone)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
}

/// Why a call brought back no answer we can use.
#[derive(Debug)]
pub enum CallError {
    /// Nothing listens at its address.
    Refused,
    /// Its host name does not resolve.
    UnknownHost,
    /// No whole answer within the deadline.
    TimedOut,
    /// The connection failed another way (reset, closed half-way).
    Broken(String),
    /// It answered with an error status, and its own explanation if it gave one.
    Status(StatusCode, Option<String>),
    /// It answered something that is not JSON.
    NotJson(String),
    /// The body our own client sent is over the limit (in bytes).
    BodyTooLarge(u64),
    /// Our own client sent its body too slowly: it was late, not the upstream.
    ClientTooSlow,
}

/// What went wrong, in words that follow the upstream's name.
impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Refused => write!(f, "refused the connection: is it running?"),
            CallError::UnknownHost => {
                write!(f, "cannot be found: is the host name in its URL right?")
            }
            CallError::TimedOut => write!(f, "did not answer in time"),
            CallError::Broken(why) => write!(f, "failed: {why}"),
            CallError::Status(status, Some(detail)) => write!(f, "answered {status}: {detail}"),
            CallError::Status(status, None) => write!(f, "answered {status}"),
            CallError::NotJson(why) => write!(f, "answered something that is not JSON ({why})"),
            CallError::BodyTooLarge(limit) => {
                write!(f, "the body is larger than the gateway's limit of {limit} bytes")
            }
            CallError::ClientTooSlow => write!(f, "the request's body did not arrive in time"),
        }
    }
}

impl From<SendRequestError> for CallError {
    fn from(error: SendRequestError) -> Self {
        match error {
            SendRequestError::Connect(ConnectError::Io(io))
                if io.kind() == io::ErrorKind::ConnectionRefused =>
            {
                CallError::Refused
            }
            SendRequestError::Connect(ConnectError::Resolver(_)) => CallError::UnknownHost,
            SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
                CallError::TimedOut
            }
            other => CallError::Broken(other.to_string()),
        }
    }
}

impl From<JsonPayloadError> for CallError {
    fn from(error: JsonPayloadError) -> Self {
        match error {
            // The deadline ran out while the answer was still arriving.
            JsonPayloadError::Payload(PayloadError::Io(io))
                if io.kind() == io::ErrorKind::TimedOut =>
            {
                CallError::TimedOut
            }
            other => CallError::NotJson(other.to_string()),
        }
    }
}

impl Upstream {
    pub fn new(name: impl Into<String>, url: impl Into<String>, timeout: Duration) -> Self {
        Upstream { name: name.into(), url: url.into(), timeout }
    }

    /// Sends `request`, and `body` after it, to the upstream, and waits for
    /// its answer to begin. Every call to another service goes out here.
    pub async fn call(
        &self,
        request: ClientRequest,
        body: Body,
    ) -> Result<ClientResponse, CallError> {
        // The deadline covers the whole call, to the last byte of the answer:
        // awc hands what is left of it on to the answer's body.
        body.send(request.timeout(self.timeout)).await
    }

    /// GETs `path` from the upstream and reads its JSON answer.
    pub async fn get_json(&self, client: &awc::Client, path: &str) -> Result<Value, Problem> {
        self.read_json(client, path).await.map_err(|error| self.problem(&error))
    }

    /// The same, with what went wrong as a `CallError`.
    async fn read_json(&self, client: &awc::Client, path: &str) -> Result<Value, CallError> {
        let mut response =
            self.call(client.get(format!("{}{path}", self.url)), Body::Empty).await?;
        let status = response.status();
        if !status.is_success() {
            // Pass on the upstream's own explanation, if it gave one.
            let problem: Option<Value> = response.json().await.ok();
            let detail = problem.as_ref().and_then(|problem| problem["detail"].as_str());
            return Err(CallError::Status(status, detail.map(str::to_string)));
        }
        Ok(response.json().await?)
    }

    /// What our own client sees of a failed call, and the line it leaves in
    /// the log: 502 when the upstream is down or answers badly, 504 when it
    /// is too slow; 413 or 408 when our own client's body was the trouble.
    pub fn problem(&self, error: &CallError) -> Problem {
        let status = match error {
            CallError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            CallError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            CallError::ClientTooSlow => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        let problem = Problem::new(status, self.explain(error));
        warn!("{}", problem.detail);
        problem
    }

    /// What went wrong, in a sentence that names the upstream (or our own
    /// client, when it was the trouble).
    pub fn explain(&self, error: &CallError) -> String {
        let timeout = humantime::format_duration(self.timeout);
        match error {
            CallError::TimedOut => {
                format!("{} at {} did not answer within {timeout}", self.name, self.url)
            }
            CallError::ClientTooSlow => {
                format!("the request's body did not arrive within {timeout}")
            }
            CallError::BodyTooLarge(_) => error.to_string(),
            _ => format!("{} at {} {error}", self.name, self.url),
        }
    }
}

/// What a call sends after its head.
pub enum Body {
    /// Nothing, as for a GET.
    Empty,
    /// A client's body, passed on by the gateway as it arrives (`guards.rs`).
    Forwarded(ForwardedBody),
    /// A JSON document, such as a registration.
    Json(Value),
}

impl Body {
    async fn send(self, request: ClientRequest) -> Result<ClientResponse, CallError> {
        match self {
            Body::Empty => Ok(request.send().await?),
            Body::Forwarded(body) => body.send(request).await,
            Body::Json(document) => Ok(request.send_json(&document).await?),
        }
    }
}
