//! The traces received, in memory, bounded: the last `keep` traces, and at
//! most `MAX_SPANS` spans in each. A viewer left running all day must not
//! grow all day; the oldest trace goes first.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// Spans kept per trace; more are counted, not kept.
pub const MAX_SPANS: usize = 1000;
/// Events kept per span, and characters kept of a name or an event.
const MAX_EVENTS: usize = 50;
const MAX_TEXT: usize = 200;

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
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub id: String,
    pub spans: Vec<Span>,
    /// Spans that came over `MAX_SPANS`.
    pub dropped: usize,
    last_span_at: Instant,
    /// How many of its spans the terminal has shown.
    shown: usize,
}

pub struct Store {
    keep: usize,
    /// Oldest first.
    traces: VecDeque<Trace>,
}

impl Store {
    pub fn new(keep: usize) -> Store {
        Store { keep: keep.max(1), traces: VecDeque::new() }
    }

    /// How many traces it keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Files every span of an OTLP export under its trace.
    pub fn add(&mut self, export: ExportTraceServiceRequest) {
        let now = Instant::now();
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let service = resource
                .attributes
                .iter()
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .map_or("unknown".to_string(), |value| match value {
                    Value::StringValue(name) => clip(name),
                    other => clip(&format!("{other:?}")),
                });
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                let error = span.status.as_ref().is_some_and(|s| s.code() == StatusCode::Error);
                let span_events = span.events.into_iter().take(MAX_EVENTS);
                let events = span_events.map(|e| (e.time_unix_nano, clip(&e.name))).collect();
                let seen = Span {
                    service: service.clone(),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: clip(&span.name),
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano.max(span.start_time_unix_nano),
                    error,
                    events,
                };
                let trace = self.trace_mut(hex(&span.trace_id));
                trace.last_span_at = now;
                if trace.spans.len() < MAX_SPANS {
                    trace.spans.push(seen);
                } else {
                    trace.dropped += 1;
                }
            }
        }
    }

    /// The trace of `id`, a new one if it is not kept (which may push out the oldest).
    fn trace_mut(&mut self, id: String) -> &mut Trace {
        // From the newest: a batch's spans are mostly of recent traces.
        match self.traces.iter().rposition(|trace| trace.id == id) {
            Some(index) => &mut self.traces[index],
            None => {
                if self.traces.len() == self.keep {
                    self.traces.pop_front();
                }
                let (last_span_at, spans) = (Instant::now(), Vec::new());
                self.traces.push_back(Trace { id, spans, dropped: 0, last_span_at, shown: 0 });
                self.traces.back_mut().expect("just pushed")
            }
        }
    }

    /// The traces kept, the one that started last first. Not the order
    /// they arrived in: each service sends its spans in batches of its own,
    /// so an older trace may arrive after a newer one.
    pub fn newest_first(&self) -> Vec<&Trace> {
        let mut traces: Vec<(usize, &Trace)> = self.traces.iter().enumerate().collect();
        let started = |trace: &Trace| trace.spans.iter().map(|span| span.start).min();
        traces.sort_by_key(|&(arrived, trace)| std::cmp::Reverse((started(trace), arrived)));
        traces.into_iter().map(|(_, trace)| trace).collect()
    }

    /// Traces with spans the terminal has not shown, and no new span for
    /// `quiet`: each service sends its spans in batches of its own, so a
    /// trace is whole only once all of them have sent theirs.
    pub fn settled(&mut self, quiet: Duration) -> Vec<Trace> {
        let settled = self.traces.iter_mut().filter(|trace| {
            trace.shown < trace.spans.len() + trace.dropped && trace.last_span_at.elapsed() >= quiet
        });
        settled
            .map(|trace| {
                trace.shown = trace.spans.len() + trace.dropped;
                trace.clone()
            })
            .collect()
    }

    /// Who called whom, and how often: a span whose parent is another
    /// service's span is a call from that service.
    pub fn dependencies(&self) -> BTreeMap<(String, String), usize> {
        let mut calls = BTreeMap::new();
        for trace in &self.traces {
            let service_of: BTreeMap<&str, &str> =
                trace.spans.iter().map(|s| (s.span_id.as_str(), s.service.as_str())).collect();
            for span in &trace.spans {
                match service_of.get(span.parent_span_id.as_str()) {
                    Some(&caller) if caller != span.service => {
                        *calls.entry((caller.to_string(), span.service.clone())).or_default() += 1
                    }
                    _ => {}
                }
            }
        }
        calls
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A sender's text, cut to a length a line can show.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
