//! What the viewer keeps of a span it receives. Everything in a span comes
//! from outside: ids are checked (a trace id is 16 bytes, a span id 8, as
//! W3C trace context says), and text is made printable and clipped before
//! it is kept, so that nothing a sender writes can grow the viewer or reach
//! its terminal as a command.

use std::fmt::{self, Write};

use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// Events kept per span; more are counted, not kept.
pub const MAX_EVENTS: usize = 50;
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
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
    pub error: bool,
    /// What happened inside it (a breaker's decision, a cache hit): when, and what.
    pub events: Vec<(u64, String)>,
    /// Events it came with over `MAX_EVENTS`.
    pub dropped_events: usize,
}

impl Span {
    /// About what it takes in memory, the allocator's share included: what
    /// the store counts against its bounds. A one-letter event takes 64
    /// bytes, not one.
    pub fn bytes(&self) -> usize {
        let texts = [&self.service, &self.span_id, &self.parent_span_id, &self.name];
        let texts = texts.iter().map(|text| allocation(text.len()));
        let events = self.events.iter().map(|(_, event)| allocation(event.len()));
        let events =
            allocation(self.events.len() * size_of::<(u64, String)>()) + events.sum::<usize>();
        size_of::<Span>() + texts.sum::<usize>() + events
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
    let error = span.status.as_ref().is_some_and(|s| s.code() == StatusCode::Error);
    let dropped_events = span.events.len().saturating_sub(MAX_EVENTS);
    let events = span.events.into_iter().take(MAX_EVENTS);
    let events = events.map(|e| (e.time_unix_nano, printable(&e.name, MAX_TEXT))).collect();
    let kept = Span {
        service: service.to_string(),
        span_id: hex(&id),
        parent_span_id: hex(&span.parent_span_id),
        name: printable(&span.name, MAX_TEXT),
        start: span.start_time_unix_nano,
        end: span.end_time_unix_nano.max(span.start_time_unix_nano),
        error,
        events,
        dropped_events,
    };
    Ok(Received { trace_id: hex(&span.trace_id), id: u64::from_be_bytes(id), span: kept })
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
