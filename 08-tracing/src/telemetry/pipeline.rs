//! Where spans and log lines go: the pipeline `init_telemetry` sets up
//! when a service starts. Spans leave in batches for the OTLP collector
//! (Jaeger), from a thread of their own, and the routine ones are never
//! kept; a collector that cannot be reached is said once, not on every
//! batch; and every log line written during a request carries its trace id.

use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
use tracing::{Event, Level, Span, Subscriber, info, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::platform::{self, Output, machinery};

use super::AT_THE_EDGE;

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
