//! Distributed tracing with OpenTelemetry: one request through the gateway,
//! service1 and service2 becomes one trace, a tree of spans that Jaeger
//! draws on a time line.
//!
//! - Every request a service serves is a *server span*; every call it makes
//!   to another service is a *client span*, a child of the request's span.
//! - The W3C `traceparent` header carries the trace id and the caller's
//!   span id from one service to the next: a service that receives it makes
//!   its server span a child of the caller's client span. Except at the
//!   edge, the gateway: a client's trace is not ours to continue, so each
//!   request starts a trace there, linked to the client's.
//! - Spans are sent in batches, by a thread of their own, to an OTLP
//!   collector (Jaeger understands OTLP), never on a request's path. With no
//!   collector, spans are dropped and the services work as before.
//! - Every log line written during a request starts with its trace id, and
//!   every answer carries it in `X-Trace-Id`: paste it into Jaeger.
//!
//! This file makes the spans; `telemetry/pipeline.rs` sets up, once, where
//! they go, and the log lines with their trace ids.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, global};
use tracing::field::Empty;
use tracing::{Span, info, info_span};
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use awc::{ClientRequest, ClientResponse};

use crate::CallError;
use crate::platform::machinery;

mod pipeline;

pub use pipeline::{current_trace_id, init_telemetry};

/// The server span of every request, with the names OpenTelemetry's HTTP
/// conventions give its attributes, as a child of the caller's span when
/// the request carries `traceparent`. `TracingLogger` (tracing-actix-web)
/// opens it before the request and closes it after the answer's body.
pub struct RequestSpan;

/// Whether this service is the gateway, where requests come in from
/// outside (set once, by `init_telemetry`).
static AT_THE_EDGE: AtomicBool = AtomicBool::new(false);

/// When a request started, to log how long it took.
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        // (The fields are worked out only if the span is wanted: with
        // tracing off and request logs off, it is not.)
        let span = info_span!(
            "request",
            otel.name = span_name(request),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %request.method(),
            http.route = request.match_pattern(),
            url.path = request.path(),
            url.query = request.query_string(),
            client.address = request.peer_addr().map(|peer| peer.ip().to_string()),
            user_agent.original = request.headers().get("user-agent").and_then(|v| v.to_str().ok()),
            http.response.status_code = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            let caller = global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(request.headers()))
            });
            if AT_THE_EDGE.load(Ordering::Relaxed) {
                // A client's traceparent must not choose: "not sampled" (-00)
                // would hide its request, and a trace id of its choosing would
                // put unrelated requests in one trace. A new trace starts here;
                // the client's span is kept as a link, to follow if wanted.
                let _ = span.set_parent(Context::new());
                span.add_link(caller.span().span_context().clone());
            } else {
                let _ = span.set_parent(caller);
            }
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let Ok(response) = outcome else {
            return; // actix turns errors into answers before they get here
        };
        let status = response.status();
        record_status(&span, status);
        if machinery::is_routine(response.request().path()) {
            return; // the registry's dashboard and Prometheus show them
        }
        // The request's log line, inside its span, so that it has the trace id.
        let request = response.request();
        let took = request.extensions().get::<Started>().map(|started| started.0.elapsed());
        let size = match response.response().body().size() {
            BodySize::Sized(size) => format!(" {size}B"),
            _ => String::new(),
        };
        span.in_scope(|| {
            info!(
                target: "request",
                "\"{} {} {:?}\" {}{size} {:.3}ms",
                request.method(),
                request.uri(),
                request.version(),
                status.as_u16(),
                took.unwrap_or_default().as_secs_f64() * 1000.0
            )
        });
    }
}

/// Gives the span of the request being served its route and name, where
/// actix matched no route pattern (the gateway reads `/api/<service>/…`
/// itself).
pub fn rename_request_span(route: &'static str, name: String) {
    Span::current().record("http.route", route);
    Span::current().context().span().update_name(name);
}

/// A request span's name: the method and the route's pattern, such as
/// `GET /breakers`; never the path itself, which can take endless values.
fn span_name(request: &ServiceRequest) -> String {
    match request.match_pattern() {
        Some(route) => format!("{} {route}", request.method()),
        None => request.method().to_string(),
    }
}

/// OpenTelemetry's rule for HTTP spans: a 5xx is an error of the server; a
/// 4xx is the client's, and not an error of the server's span.
pub fn record_status(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
}

/// Middleware: the trace id in every answer, for the learner to paste into
/// Jaeger's "Lookup by Trace ID".
pub async fn trace_id_header(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let trace_id = current_trace_id().and_then(|id| HeaderValue::from_str(&id).ok());
    let mut response = next.call(request).await?;
    if let Some(trace_id) = trace_id {
        response.headers_mut().insert(HeaderName::from_static("x-trace-id"), trace_id);
    }
    Ok(response)
}

/// The client span of a call to another service, a child of the span of
/// the request being served, and `traceparent` in the call's headers: the
/// trace, and this span as the parent of the span the called service opens.
/// Outside a request (a health check, say) there is no trace to add it to,
/// and no span.
pub fn client_span(request: &mut ClientRequest, service: &str) -> Span {
    if Span::current().is_none() {
        return Span::none();
    }
    let method = request.get_method();
    let span = info_span!(
        "call",
        otel.name = format!("{method} {service}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = %method,
        url.full = %request.get_uri(),
        peer.service = service,
        http.response.status_code = Empty,
        error.type = Empty,
    );
    let context = span.context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
    });
    span
}

/// Records on a call's client span how it went: the status the service
/// answered, or what kept it from answering (no answer at all, a timeout).
pub fn record_outcome(span: &Span, outcome: &Result<ClientResponse, CallError>, service: &str) {
    match outcome {
        Ok(answer) => record_status(span, answer.status()),
        Err(error) if error.is_upstream_fault() => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", format!("{service} {error}"));
        }
        Err(_) => {} // our own client's doing, not the service's
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
