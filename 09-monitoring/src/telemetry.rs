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

use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{
    Link, SpanKind, TraceContextExt, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SpanData,
    SpanExporter,
};
use tracing::field::Empty;
use tracing::{Event, Level, Span, Subscriber, info, info_span, warn};
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use awc::{ClientRequest, ClientResponse};

use crate::CallError;
use crate::platform::{self, Output, machinery};

/// Where spans go when `OTEL_EXPORTER_OTLP_ENDPOINT` (a variable every
/// OpenTelemetry SDK reads) is not set: Jaeger's OTLP/HTTP port here.
const OTLP_ENDPOINT: &str = "http://127.0.0.1:4318";

/// Sends the spans that are still waiting when it is dropped, at the end
/// of `run`. (Not on the async runtime: sending blocks.)
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = &self.0 {
            let _ = provider.shutdown();
        }
    }
}

/// Log lines on stdout (through `log`) as before, and spans to the OTLP collector at
/// `OTEL_EXPORTER_OTLP_ENDPOINT` under `service`'s name, unless
/// `OTEL_SDK_DISABLED=true`.
pub fn init_telemetry(service: &'static str, log: Output) -> Result<Telemetry, String> {
    AT_THE_EDGE.store(service == crate::gateway::NAME, Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let log_lines = tracing_subscriber::fmt::layer()
        .event_format(WithTraceId)
        .with_ansi(io::stdout().is_terminal())
        // Through a queue: a terminal that stops reading never stops the service.
        .with_writer(log)
        // When the launcher is gone, a log line has nowhere to go; reporting
        // that on stderr (gone too) would panic, and the service could then
        // not shut down.
        .log_internal_errors(false)
        .with_filter(filter);

    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let provider = if disabled { Ok(None) } else { tracer_provider(service).map(Some) };
    let spans = provider.as_ref().ok().and_then(Option::as_ref).map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            // Leave out the source line, thread and idle time every span
            // would carry to the collector: none helps to read these traces.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Nor keep OpenTelemetry's "current context" in step with the
            // span being entered, which costs on every poll of every
            // request: the code here asks a span for its context instead.
            .with_context_activation(false)
            // Only this step's spans and events, not its libraries' (the
            // exporter's HTTP client would trace itself).
            .with_filter(Targets::new().with_target(env!("CARGO_CRATE_NAME"), Level::DEBUG))
    });
    tracing_subscriber::registry().with(log_lines).with(spans).init();
    // How the trace context travels in HTTP headers: W3C Trace Context.
    global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Telemetry(provider?))
}

/// Spans of `service`, sent to the collector at `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let endpoint =
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|_| OTLP_ENDPOINT.to_string());
    let endpoint = platform::http_url(&endpoint).map_err(|problem| {
        let jaeger = format!("Jaeger here listens on {OTLP_ENDPOINT}");
        format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint} is {problem}; {jaeger}")
    })?;
    // The variable names the collector; the path of traces is added here.
    let endpoint = endpoint.trim_end_matches("/v1/traces").to_string();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(Duration::from_secs(3))
        .build()
        .map_err(|problem| format!("cannot send traces to {endpoint}: {problem}"))?;
    let exporter = ReportFailures { exporter, endpoint, failing: AtomicBool::new(false) };
    Ok(SdkTracerProvider::builder()
        // Spans wait in a queue and leave in batches, from a thread of their
        // own: no request ever waits for the collector.
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(SkipBookkeeping)))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// The OTLP exporter, saying once that the collector cannot be reached, and
/// once that it can again, rather than nothing or once per batch.
#[derive(Debug)]
struct ReportFailures {
    exporter: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    failing: AtomicBool,
}

impl SpanExporter for ReportFailures {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.exporter.export(batch).await;
        match &result {
            Err(problem) if !self.failing.swap(true, Ordering::Relaxed) => warn!(
                "cannot send traces to {}: is Jaeger running? Spans are dropped until it \
                 answers; this is said once. ({problem})",
                self.endpoint
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                info!("sending traces to {} again", self.endpoint)
            }
            _ => {}
        }
        result
    }

    // (The OTLP exporter has nothing to flush or shut down; it only needs
    // the resource, which names the service.)
    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// The trace id of the span being worked on, if there is one and it is kept.
pub fn current_trace_id() -> Option<String> {
    let context = Span::current().context();
    let span = context.span();
    let span = span.span_context();
    span.is_sampled().then(|| span.trace_id().to_string())
}

/// Which traces are kept: all but routine requests and (de)registrations
/// (`/v1/agent/…`), which no person asked for. (A trace's first span decides
/// for the whole trace: `traceparent` says "not sampled" to the services it
/// calls, and they drop their spans too.)
#[derive(Clone, Debug)]
struct SkipBookkeeping;

impl ShouldSample for SkipBookkeeping {
    fn should_sample(
        &self,
        _: Option<&Context>,
        _: TraceId,
        name: &str,
        _: &SpanKind,
        _: &[KeyValue],
        _: &[Link],
    ) -> SamplingResult {
        let path = name.split_once(' ').map_or(name, |(_method, path)| path);
        let decision = match machinery::is_routine(path) || path.starts_with("/v1/agent/") {
            true => SamplingDecision::Drop,
            false => SamplingDecision::RecordAndSample,
        };
        SamplingResult { decision, attributes: Vec::new(), trace_state: TraceState::default() }
    }
}

/// A log line: time, level, the trace id when the line belongs to a
/// request, then the message.
struct WithTraceId;

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let level = *event.metadata().level();
        let colour = match level {
            Level::ERROR => "31",
            Level::WARN => "33",
            Level::INFO => "32",
            _ => "34",
        };
        match writer.has_ansi_escapes() {
            true => write!(writer, " \x1b[{colour}m{level:>5}\x1b[0m ")?,
            false => write!(writer, " {level:>5} ")?,
        }
        if let Some(trace_id) = current_trace_id() {
            write!(writer, "trace_id={trace_id} ")?;
        }
        context.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

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
