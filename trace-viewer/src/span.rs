//! What the viewer keeps of a span it receives. Everything in a span comes
//! from outside: ids are checked (a trace id is 16 bytes, a span id 8, as
//! W3C trace context says), and text is made printable and clipped before
//! it is kept, so that nothing a sender writes can grow the viewer or reach
//! its terminal as a command.

use std::fmt::{self, Write};

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// Events and attributes kept per span; more are counted, not kept.
pub const MAX_EVENTS: usize = 50;
pub const MAX_ATTRIBUTES: usize = 32;
/// Bytes kept of a name or an event (a clipped text ends in `…`).
pub const MAX_TEXT: usize = 200;

#[derive(Clone, Debug)]
pub struct Span {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `server` (a request served), `client` (a call made), `internal`, …
    pub kind: &'static str,
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
    pub error: bool,
    /// What went wrong, if the sender said.
    pub status: String,
    /// What it was about (`http.route`, `http.response.status_code`, …),
    /// Jaeger's *Tags*: name and value.
    pub attributes: Vec<(String, String)>,
    /// What happened inside it (a breaker's decision, a cache hit): when, and what.
    pub events: Vec<(u64, String)>,
    /// Events and attributes it came with over `MAX_EVENTS` and `MAX_ATTRIBUTES`.
    pub dropped_events: usize,
    pub dropped_attributes: usize,
}

impl Span {
    /// About what it takes in memory, the allocator's share included: what
    /// the store counts against its bounds. A one-letter event takes 64
    /// bytes, not one.
    pub fn bytes(&self) -> usize {
        let texts = [&self.service, &self.span_id, &self.parent_span_id, &self.name, &self.status];
        let texts = texts.iter().map(|text| allocation(text.len()));
        let events = self.events.iter().map(|(_, event)| allocation(event.len()));
        let events =
            allocation(self.events.len() * size_of::<(u64, String)>()) + events.sum::<usize>();
        let attributes =
            self.attributes.iter().map(|(k, v)| allocation(k.len()) + allocation(v.len()));
        let attributes = allocation(self.attributes.len() * size_of::<(String, String)>())
            + attributes.sum::<usize>();
        size_of::<Span>() + texts.sum::<usize>() + events + attributes
    }
}

/// A span as received: the trace it belongs to, and its id as a number (to
/// tell a duplicate cheaply).
pub struct Received {
    pub trace_id: String,
    pub id: u64,
    pub span: Span,
}

/// Why a span is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TraceId { bytes: usize },
    SpanId { bytes: usize },
    ParentSpanId { bytes: usize },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, bytes, expected) = match *self {
            Refused::TraceId { bytes } => ("trace id", bytes, "16, not all zero"),
            Refused::SpanId { bytes } => ("span id", bytes, "8, not all zero"),
            Refused::ParentSpanId { bytes } => ("parent span id", bytes, "8, or none for a root"),
        };
        write!(f, "a span with a {what} of {bytes} bytes ({expected} expected)")
    }
}

/// Checks a span from `service` and keeps what the viewer shows of it.
pub fn receive(span: OtlpSpan, service: &str) -> Result<Received, Refused> {
    let valid = |id: &[u8], len: usize| id.len() == len && id.iter().any(|&byte| byte != 0);
    if !valid(&span.trace_id, 16) {
        return Err(Refused::TraceId { bytes: span.trace_id.len() });
    }
    let Ok(id) = <[u8; 8]>::try_from(&span.span_id[..]) else {
        return Err(Refused::SpanId { bytes: span.span_id.len() });
    };
    if !valid(&id, 8) {
        return Err(Refused::SpanId { bytes: 8 });
    }
    if !span.parent_span_id.is_empty() && !valid(&span.parent_span_id, 8) {
        return Err(Refused::ParentSpanId { bytes: span.parent_span_id.len() });
    }
    let (error, kind) =
        (span.status.as_ref().is_some_and(|s| s.code() == StatusCode::Error), span.kind());
    let status = span.status.as_ref().map_or(String::new(), |s| printable(&s.message, MAX_TEXT));
    let dropped_events = span.events.len().saturating_sub(MAX_EVENTS);
    let events = span.events.into_iter().take(MAX_EVENTS);
    let events = events.map(|e| (e.time_unix_nano, printable(&e.name, MAX_TEXT))).collect();
    let dropped_attributes = span.attributes.len().saturating_sub(MAX_ATTRIBUTES);
    let attributes = span.attributes.iter().take(MAX_ATTRIBUTES);
    let attributes = attributes.map(|a| (printable(&a.key, MAX_TEXT), value(a.value.as_ref())));
    let kept = Span {
        service: service.to_string(),
        span_id: hex(&id),
        parent_span_id: hex(&span.parent_span_id),
        name: printable(&span.name, MAX_TEXT),
        kind: kind_name(kind),
        start: span.start_time_unix_nano,
        end: span.end_time_unix_nano.max(span.start_time_unix_nano),
        error,
        status,
        attributes: attributes.collect(),
        events,
        dropped_events,
        dropped_attributes,
    };
    Ok(Received { trace_id: hex(&span.trace_id), id: u64::from_be_bytes(id), span: kept })
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal | SpanKind::Unspecified => "internal",
    }
}

/// An attribute's value as text: a list or a map says how long it is
/// rather than what it holds, which may be anything up to a post's size.
pub fn value(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => printable(text, MAX_TEXT),
        Some(Value::BoolValue(boolean)) => boolean.to_string(),
        Some(Value::IntValue(integer)) => integer.to_string(),
        Some(Value::DoubleValue(double)) => double.to_string(),
        Some(Value::ArrayValue(array)) => format!("[{} values]", array.values.len()),
        Some(Value::KvlistValue(map)) => format!("{{{} keys}}", map.values.len()),
        Some(Value::BytesValue(bytes)) => format!("{} bytes", bytes.len()),
        // A reference into a dictionary the sender did not send here.
        Some(Value::StringValueStrindex(index)) => format!("string #{index}"),
        None => String::new(),
    }
}

/// What the allocator takes for `bytes` (glibc's malloc: 8 bytes more,
/// rounded up to 16, 32 at least).
fn allocation(bytes: usize) -> usize {
    match bytes {
        0 => 0,
        _ => (bytes + 8).next_multiple_of(16).max(32),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// A sender's text as the viewer shows it, at most `max` bytes of it. A
/// control character is written out (`\u{1b}`): printed as it is, ESC
/// starts a terminal command (clear the screen, set the clipboard with OSC
/// 52), BEL rings, a newline breaks the waterfall's lines. Characters that
/// reorder text (right-to-left overrides) are written out too.
pub fn printable(text: &str, max: usize) -> String {
    let mut shown = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let before = shown.len();
        if c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
        } else {
            shown.push(c);
        }
        if shown.len() > max {
            shown.truncate(before);
            shown.push('…');
            break;
        }
    }
    shown
}
