//! The traces received, in memory, bounded: the last `keep` traces, at most
//! `MAX_SPANS` spans and `MAX_TRACE_BYTES` in each, and `MAX_STORE_BYTES`
//! in all. A viewer left running all day must not grow all day; the oldest
//! trace goes first, and what is not kept is counted where the trace is
//! shown.
//!
//! Each trace is behind an `Arc`: the page and the terminal render from a
//! snapshot (the `Arc`s, taken under the lock in no time), so an OTLP post
//! never waits for a render, and a render never sees a trace half-added.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::span::Span;
use crate::span::{MAX_ATTRIBUTES, MAX_EVENTS, Received};

/// Spans kept per trace; more are counted, not kept.
pub const MAX_SPANS: usize = 1000;
/// Memory a trace's spans may take (a step's trace takes a few KiB).
pub const MAX_TRACE_BYTES: usize = 512 * 1024;
/// Memory all the traces kept may take: the oldest go first beyond it.
pub const MAX_STORE_BYTES: usize = 32 * 1024 * 1024;

/// What was received but not kept, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Spans with the id of a span already kept in their trace.
    pub duplicates: usize,
    /// Spans over `MAX_SPANS` or `MAX_TRACE_BYTES`.
    pub over_limit: usize,
    /// Events and attributes over a span's `MAX_EVENTS` and `MAX_ATTRIBUTES`.
    pub events: usize,
    pub attributes: usize,
}

impl Dropped {
    pub fn spans(&self) -> usize {
        self.duplicates + self.over_limit
    }

    fn add(&mut self, other: Dropped) {
        self.duplicates += other.duplicates;
        self.over_limit += other.over_limit;
        self.events += other.events;
        self.attributes += other.attributes;
    }
}

/// "2 spans with a duplicate id, 710 spans over the trace's limits, 30
/// events over a span's 50": only what is not zero, empty if nothing is.
impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut parts = Vec::new();
        if self.duplicates > 0 {
            let n = self.duplicates;
            parts.push(format!("{n} span{} with a duplicate id", plural(n)));
        }
        if self.over_limit > 0 {
            let n = self.over_limit;
            parts.push(format!("{n} span{} over the trace's limits", plural(n)));
        }
        if self.events > 0 {
            let n = self.events;
            parts.push(format!("{n} event{} over a span's {MAX_EVENTS}", plural(n)));
        }
        if self.attributes > 0 {
            let n = self.attributes;
            parts.push(format!("{n} attribute{} over a span's {MAX_ATTRIBUTES}", plural(n)));
        }
        write!(f, "{}", parts.join(", "))
    }
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub id: String,
    pub spans: Vec<Span>,
    pub dropped: Dropped,
    /// The earliest start of its spans: the order traces are shown in.
    started: u64,
    bytes: usize,
    span_ids: HashSet<u64>,
}

/// A trace as the store holds it: the trace, and when the terminal last saw it.
struct Kept {
    trace: Arc<Trace>,
    last_span_at: Instant,
    /// How many of its spans (kept or dropped) the terminal has shown.
    shown: usize,
}

pub struct Store {
    keep: usize,
    /// Oldest first.
    traces: VecDeque<Kept>,
    bytes: usize,
    /// Since the viewer started, in traces kept or gone.
    dropped: Dropped,
    /// Spans refused since the viewer started (their ids were not ids).
    refused: usize,
    /// One more at every post: a page that saw this version has nothing new to fetch.
    version: u64,
}

/// The traces kept at one moment, to render without holding the store.
pub struct Snapshot {
    /// The one that started last first.
    pub traces: Vec<Arc<Trace>>,
    pub keep: usize,
    /// Everything not kept since the viewer started.
    pub dropped: Dropped,
    /// Spans refused since the viewer started.
    pub refused: usize,
    pub version: u64,
}

impl Store {
    pub fn new(keep: usize) -> Store {
        let dropped = Dropped::default();
        let traces = VecDeque::new();
        Store { keep: keep.max(1), traces, bytes: 0, dropped, refused: 0, version: 0 }
    }

    /// Counts spans refused before they reached the store.
    pub fn refused(&mut self, spans: usize) {
        if spans > 0 {
            self.refused += spans;
            self.version += 1;
        }
    }

    /// Files each span under its trace, or counts it if the trace is full.
    pub fn add(&mut self, spans: Vec<Received>) {
        let now = Instant::now();
        self.version += 1;
        for Received { trace_id, id, span } in spans {
            // The span, and its id in `span_ids`.
            let bytes = span.bytes() + 2 * size_of::<u64>();
            let kept = self.kept_mut(trace_id);
            kept.last_span_at = now;
            let trace = Arc::make_mut(&mut kept.trace);
            let mut dropped = Dropped::default();
            if trace.span_ids.contains(&id) {
                dropped.duplicates = 1;
            } else if trace.spans.len() == MAX_SPANS || trace.bytes + bytes > MAX_TRACE_BYTES {
                dropped.over_limit = 1;
            } else {
                (dropped.events, dropped.attributes) =
                    (span.dropped_events, span.dropped_attributes);
                trace.started = trace.started.min(span.start);
                trace.span_ids.insert(id);
                trace.spans.push(span);
                trace.bytes += bytes;
            }
            trace.dropped.add(dropped);
            if dropped.spans() == 0 {
                self.bytes += bytes;
            }
            self.dropped.add(dropped);
            self.keep_within(MAX_STORE_BYTES);
        }
    }

    /// The trace of `id`, a new one if it is not kept (which may push out the oldest).
    fn kept_mut(&mut self, id: String) -> &mut Kept {
        // From the newest: a batch's spans are mostly of recent traces.
        match self.traces.iter().rposition(|kept| kept.trace.id == id) {
            Some(index) => &mut self.traces[index],
            None => {
                if self.traces.len() == self.keep {
                    self.forget_oldest();
                }
                let (span_ids, dropped) = (HashSet::new(), Dropped::default());
                let trace =
                    Trace { id, spans: Vec::new(), dropped, started: u64::MAX, bytes: 0, span_ids };
                let (last_span_at, shown) = (Instant::now(), 0);
                self.traces.push_back(Kept { trace: Arc::new(trace), last_span_at, shown });
                self.traces.back_mut().expect("just pushed")
            }
        }
    }

    fn keep_within(&mut self, bytes: usize) {
        while self.bytes > bytes && self.traces.len() > 1 {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.traces.pop_front() {
            self.bytes -= oldest.trace.bytes;
        }
    }

    /// The traces kept, the one that started last first. Not the order
    /// they arrived in: each service sends its spans in batches of its own,
    /// so an older trace may arrive after a newer one.
    pub fn snapshot(&self) -> Snapshot {
        let mut traces: Vec<(usize, Arc<Trace>)> =
            self.traces.iter().map(|kept| kept.trace.clone()).enumerate().collect();
        traces.sort_by_key(|(arrived, trace)| std::cmp::Reverse((trace.started, *arrived)));
        let traces = traces.into_iter().map(|(_, trace)| trace).collect();
        let (keep, dropped, refused, version) =
            (self.keep, self.dropped, self.refused, self.version);
        Snapshot { traces, keep, dropped, refused, version }
    }

    /// Traces with spans the terminal has not shown, and no new span for
    /// `quiet`: each service sends its spans in batches of its own, so a
    /// trace is whole only once all of them have sent theirs.
    pub fn settled(&mut self, quiet: Duration) -> Vec<Arc<Trace>> {
        let received = |trace: &Trace| trace.spans.len() + trace.dropped.spans();
        let settled = self.traces.iter_mut().filter(|kept| {
            kept.shown < received(&kept.trace) && kept.last_span_at.elapsed() >= quiet
        });
        settled
            .map(|kept| {
                kept.shown = received(&kept.trace);
                kept.trace.clone()
            })
            .collect()
    }
}

impl Snapshot {
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
