//! What the gateway guards against. It is the one door to every service, so
//! it is where a hostile (or careless) client is stopped, before any service
//! spends anything on it. `gateway.rs` is the lesson; this is the hardening
//! every real proxy has, each guard here for something a client can do:
//!
//! - **Spell a path many ways.** `/service1/%68ealthz` is `/service1/healthz`
//!   to the service behind; `..` climbs out of a prefix; `%2F` hides a `/`
//!   inside a segment; a control character forges a line in a log. The
//!   gateway decides on the path as the service will read it, decoded
//!   (`decode_path`), refuses what a service could read another way, and
//!   sends it on spelt one way only (`path_for_service`).
//! - **Send huge headers.** actix reads up to 128 KiB of them; a service
//!   behind may take less, and fail its own way. Over 16 KiB: 431, here.
//! - **Slip in headers meant for the hop.** `Connection`, `Transfer-Encoding`
//!   and their kin describe one connection, not the request; passed on, they
//!   would tell the service how to read a connection they do not describe
//!   (request smuggling). They stop here (`end_to_end`), as does the API key:
//!   it is the gateway's, not the services'.
//! - **Pass for someone else.** `X-Forwarded-For` and its kin tell a service
//!   who the client is. A client that writes them itself could pass for any
//!   address: the gateway drops them and writes its own (`pass_on_headers`).
//! - **Send a body without end, or at a crawl.** Never held whole, a body
//!   streams through, counted against a limit (`ForwardedBody`): a declared
//!   length over it is a 413 before any call; a client that declares none,
//!   or lies, is cut off once it goes over. A client too slow to send gets a
//!   408, and its slowness is not counted against the service.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::HttpRequest;
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::{self, Bytes};
use awc::error::{PayloadError, SendRequestError};
use awc::{ClientRequest, ClientResponse};
use futures_util::{Stream, StreamExt};
use percent_encoding::percent_decode_str;

use crate::platform::{self, Problem};
use crate::{Body, CallError};

/// The segments of a path as a service will read them, percent-decoded:
/// the gateway decides on these (which service, whether it is internal) and
/// `path_for_service` sends them on spelt one way, since "%68ealthz" is
/// "healthz" to a service. What a service could read otherwise (`.` and
/// `..`, an encoded `/`, an empty segment inside the path) is refused.
pub fn decode_path(raw: &str) -> Result<Vec<String>, Problem> {
    let segments: Vec<&str> = raw.split('/').collect();
    let last = segments.len() - 1;
    let decode = |(at, segment): (usize, &&str)| {
        let decoded = percent_decode_str(segment).decode_utf8();
        let decoded = decoded.map_err(|_| "it is not UTF-8 once decoded")?;
        match &*decoded {
            "" if at < last => Err("it has an empty segment (//)"),
            "." | ".." => Err("it has a . or .. segment"),
            text if text.contains('/') => Err("it has an encoded / (%2F)"),
            text if text.chars().any(char::is_control) => Err("it has a control character"),
            _ => Ok(decoded.into_owned()),
        }
    };
    let refuse = |why| Problem::new(StatusCode::BAD_REQUEST, format!("the path is refused: {why}"));
    segments.iter().enumerate().map(decode).collect::<Result<_, _>>().map_err(refuse)
}

/// The path, and query, that the service will see: the decoded `segments`,
/// each encoded one way only.
pub fn path_for_service(segments: &[String], query: Option<&str>) -> String {
    let encoded: Vec<String> = segments.iter().map(|part| platform::path_segment(part)).collect();
    match query {
        Some(query) => format!("{}?{query}", encoded.join("/")),
        None => encoded.join("/"),
    }
}

/// The most header bytes (names and values) the gateway passes on: actix
/// reads up to 128 KiB, but a service behind may take less, so it says no first.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses headers over `MAX_HEADER_BYTES`: 431.
pub fn check_headers(request: &HttpRequest) -> Result<(), Problem> {
    let header_bytes: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        let detail =
            format!("the headers are larger than the gateway's limit of {MAX_HEADER_BYTES} bytes");
        return Err(Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, detail));
    }
    Ok(())
}

/// The client's body, to be passed on as it arrives, or the 413 of one
/// whose declared length is over `limit`: refused before any call.
pub fn checked_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: u64,
) -> Result<Body, Problem> {
    let content_length = request.headers().get(header::CONTENT_LENGTH);
    let declared_length = content_length.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        // Worded as when a body goes over on its way (`ForwardedBody`).
        let detail = CallError::BodyTooLarge(limit).to_string();
        return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail));
    }
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    Ok(match declared_length {
        None if !chunked => Body::Empty,
        length => Body::Forwarded(ForwardedBody::new(payload, length, limit)),
    })
}

/// Headers that describe one connection, not the message: a proxy must
/// not pass them on (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The headers of `from` that are about the message, not the connection.
pub fn end_to_end(from: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    // Connection may name more hop-by-hop headers: "Connection: X-Trace".
    let listed = from.get_all(header::CONNECTION).filter_map(|value| value.to_str().ok());
    let named: Vec<&str> = listed.flat_map(|value| value.split(',')).map(str::trim).collect();
    from.iter().filter(move |(name, _)| {
        !HOP_BY_HOP.contains(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()))
    })
}

/// `outgoing` with the client's headers that go on to the service, and the
/// forwarding headers that the gateway writes itself.
pub fn pass_on_headers(request: &HttpRequest, mut outgoing: ClientRequest) -> ClientRequest {
    for (name, value) in end_to_end(request.headers()) {
        // The API key is for the gateway: it stops here. Host and length are
        // the new request's, and the forwarding headers are the gateway's own.
        let stops_here = [header::AUTHORIZATION, header::HOST, header::CONTENT_LENGTH];
        if !stops_here.contains(name) && !is_forwarding(name) {
            outgoing = outgoing.append_header((name.clone(), value.clone()));
        }
    }
    for (name, value) in forwarded_for(request) {
        outgoing = outgoing.insert_header((name, value));
    }
    outgoing
}

/// X-Forwarded-For, -Proto and -Host tell the service who the client was
/// and what it asked for, which the service cannot see behind a proxy. The
/// gateway is the edge, the first hop a service can believe: it says this
/// from what it saw itself, never from what the client wrote.
fn forwarded_for(request: &HttpRequest) -> [(HeaderName, HeaderValue); 3] {
    let peer = request.peer_addr().map(|peer| peer.ip().to_string()).unwrap_or_default();
    let host = request.headers().get(header::HOST).cloned();
    const EMPTY: HeaderValue = HeaderValue::from_static("");
    [
        (HeaderName::from_static("x-forwarded-for"), HeaderValue::try_from(peer).unwrap_or(EMPTY)),
        (HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http")),
        (HeaderName::from_static("x-forwarded-host"), host.unwrap_or(EMPTY)),
    ]
}

/// What proxies say of the client: `Forwarded`, `X-Forwarded-*`, `X-Real-IP`.
/// A client that writes them itself could pass for any address or host.
fn is_forwarding(name: &HeaderName) -> bool {
    let name = name.as_str(); // always lowercase
    name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-")
}

/// A client's body on its way to the service, never held whole: counted
/// against a limit (a client that sends more than it said up front is cut
/// off too), and noting whose turn it is, since a call that times out while
/// waiting for the client is not the service's failure.
pub struct ForwardedBody {
    payload: web::Payload,
    /// From Content-Length; none when the client sends it in chunks.
    length: Option<u64>,
    received: u64,
    limit: u64,
    /// awc takes the body itself to send it; `send` keeps this handle on
    /// where it got to, to read once awc is done (one thread: an `Rc`).
    progress: Rc<Cell<BodyProgress>>,
}

/// Where the body is: passed on as fast as it comes, waited for from the
/// client, or over the limit.
#[derive(Clone, Copy)]
enum BodyProgress {
    Flowing,
    WaitingForClient,
    OverLimit,
}

impl ForwardedBody {
    fn new(payload: web::Payload, length: Option<u64>, limit: u64) -> Self {
        let progress = Rc::new(Cell::new(BodyProgress::Flowing));
        ForwardedBody { payload, length, received: 0, limit, progress }
    }

    /// Sends `request` with this body; a failure while the body was over
    /// the limit, or waiting for the client, is the client's.
    pub(crate) async fn send(self, request: ClientRequest) -> Result<ClientResponse, CallError> {
        let (progress, limit) = (self.progress.clone(), self.limit);
        let sent = match self.length {
            Some(length) => request.send_body(SizedStream::new(length, self)).await,
            None => request.send_stream(self).await,
        };
        match (sent, progress.get()) {
            (Ok(answer), _) => Ok(answer),
            (Err(_), BodyProgress::OverLimit) => Err(CallError::BodyTooLarge(limit)),
            (Err(SendRequestError::Timeout), BodyProgress::WaitingForClient) => {
                Err(CallError::ClientTooSlow)
            }
            (Err(error), _) => Err(error.into()),
        }
    }
}

/// awc asks for the body a piece at a time (`poll_next`): each piece the
/// client sent is passed on and counted; `Pending` means the client has not
/// sent the next one yet.
impl Stream for ForwardedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.payload.poll_next_unpin(cx);
        let progress = match &polled {
            Poll::Pending => BodyProgress::WaitingForClient,
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    self.progress.set(BodyProgress::OverLimit);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                BodyProgress::Flowing
            }
            Poll::Ready(_) => BodyProgress::Flowing,
        };
        self.progress.set(progress);
        polled
    }
}

/// When a call ends before the whole body came (the service answered
/// early, or failed), the body is dropped half-read, and actix throws the
/// rest away as it arrives. But actix reads from the client only while the
/// body's buffer has room; with the buffer full it waits for the body to be
/// read from, and a dropped body never is: the client, still sending, would
/// wait for ever. So one more read on the way out, which wakes actix. (A
/// read needs a `Context`; no one waits for this one's answer, so a waker
/// that does nothing will do.)
impl Drop for ForwardedBody {
    fn drop(&mut self) {
        let mut anyone = Context::from_waker(futures_util::task::noop_waker_ref());
        let _ = self.payload.poll_next_unpin(&mut anyone);
    }
}
