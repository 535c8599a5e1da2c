//! A trace as text, for the terminal, the way Jaeger draws it: one line per
//! span, under its parent, with a bar for when it ran, scaled to the whole
//! trace; its events under it. Bounded in bytes whatever the trace:
//! indentation, each line, and the whole.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::store::{Dropped, Span, Trace};

/// Characters for the whole trace's duration.
const BAR: usize = 40;
/// Levels of indentation shown: a deeper span is indented as deep as this,
/// its depth written before its name, so that a chain of a thousand spans
/// does not make lines of thousands of spaces.
pub const MAX_INDENT: usize = 16;
/// Characters of the service's column, of a span's (indentation and name),
/// and of an event's line: longer text is cut, and ends in `…`.
const SERVICE_WIDTH: usize = 20;
const LABEL_WIDTH: usize = 60;
const EVENT_WIDTH: usize = 160;
/// Bytes of one trace's text: what does not fit is counted in a last line.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

pub fn render(trace: &Trace) -> String {
    let lines = in_tree_order(&trace.spans);
    let columns = Columns::of(trace, &lines);
    let mut text =
        format!("trace {}: {} spans, {}", trace.id, trace.spans.len(), duration(columns.total));
    if trace.dropped != Dropped::default() {
        let _ = write!(text, " (not kept: {})", trace.dropped);
    }
    text.push('\n');
    for (index, &(depth, span)) in lines.iter().enumerate() {
        if !fits(&mut text, &columns.span(depth, span)) {
            not_shown(&mut text, &lines[index..], 0);
            break;
        }
        for (shown, event) in span.events.iter().enumerate() {
            if !fits(&mut text, &columns.event(depth, event)) {
                not_shown(&mut text, &lines[index + 1..], span.events.len() - shown);
                return text;
            }
        }
    }
    text
}

/// Where a trace's lines put things: its time line, and the columns' widths.
struct Columns {
    start: u64,
    total: u64,
    service_width: usize,
    label_width: usize,
}

impl Columns {
    fn of(trace: &Trace, lines: &[(usize, &Span)]) -> Columns {
        let (start, end) = trace
            .spans
            .iter()
            .fold((u64::MAX, 0), |(start, end), span| (start.min(span.start), end.max(span.end)));
        let services = trace.spans.iter().map(|s| s.service.chars().count());
        let labels = lines.iter().map(|(depth, span)| label(*depth, span).chars().count());
        Columns {
            start,
            total: end.saturating_sub(start).max(1),
            service_width: services.max().unwrap_or(0).min(SERVICE_WIDTH),
            label_width: labels.max().unwrap_or(0).min(LABEL_WIDTH),
        }
    }

    /// A span's line: service, name, ERROR, its bar, its start and duration.
    fn span(&self, depth: usize, span: &Span) -> String {
        let (start, total) = (self.start, self.total);
        let from = ((span.start - start) as u128 * BAR as u128 / total as u128) as usize;
        let to = ((span.end - start) as u128 * BAR as u128).div_ceil(total as u128) as usize;
        let bar = format!("{}|{}|", " ".repeat(from), "=".repeat(to.saturating_sub(from + 1)));
        format!(
            "{:service_width$}  {:label_width$}  {:5}  {:width$}  +{} {}\n",
            fit(&span.service, SERVICE_WIDTH),
            fit(&label(depth, span), LABEL_WIDTH),
            if span.error { "ERROR" } else { "" },
            bar,
            duration(span.start - start),
            duration(span.end - span.start),
            service_width = self.service_width,
            label_width = self.label_width,
            width = BAR + 1,
        )
    }

    /// An event's line, under its span: when, and what.
    fn event(&self, depth: usize, (at, event): &(u64, String)) -> String {
        let (indent, at) =
            ("  ".repeat(depth.min(MAX_INDENT) + 1), duration(at.saturating_sub(self.start)));
        let event = fit(&format!("{indent}· +{at} {event}"), EVENT_WIDTH).into_owned();
        format!("{:width$}  {event}\n", "", width = self.service_width)
    }
}

/// A span's column: its name, indented by its depth.
fn label(depth: usize, span: &Span) -> String {
    match depth {
        0..=MAX_INDENT => format!("{}{}", "  ".repeat(depth), span.name),
        _ => format!("{}({depth}) {}", "  ".repeat(MAX_INDENT), span.name),
    }
}

/// At most `width` characters of `text`, the last `…` if it was cut.
fn fit(text: &str, width: usize) -> Cow<'_, str> {
    match text.char_indices().nth(width) {
        Some(_) => {
            let (end, _) = text.char_indices().nth(width - 1).expect("longer than width");
            Cow::Owned(format!("{}…", &text[..end]))
        }
        None => Cow::Borrowed(text),
    }
}

/// Appends `line` if the text stays within `MAX_TEXT_BYTES`.
fn fits(text: &mut String, line: &str) -> bool {
    let fits = text.len() + line.len() <= MAX_TEXT_BYTES;
    if fits {
        text.push_str(line);
    }
    fits
}

/// The last line of a trace too long to show whole: what it leaves out.
/// `lines` are the spans not shown; `events` the events of the span shown last that are not.
fn not_shown(text: &mut String, lines: &[(usize, &Span)], events: usize) {
    let events = events + lines.iter().map(|(_, span)| span.events.len()).sum::<usize>();
    let _ = writeln!(
        text,
        "… and {} spans and {events} events more, not shown: a trace's text stops at {} KiB",
        lines.len(),
        MAX_TEXT_BYTES / 1024
    );
}

/// Spans with their depth, each under its parent, siblings by start time.
/// A span whose parent is not here (another process's, or not arrived yet)
/// is a root; a loop of parents, which no SDK sends, is still shown.
pub(crate) fn in_tree_order(spans: &[Span]) -> Vec<(usize, &Span)> {
    let ids: HashSet<&str> = spans.iter().map(|span| span.span_id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    let mut roots = Vec::new();
    for span in spans {
        if ids.contains(span.parent_span_id.as_str()) && span.parent_span_id != span.span_id {
            children.entry(&span.parent_span_id).or_default().push(span);
        } else {
            roots.push(span);
        }
    }
    let mut lines = Vec::new();
    let mut shown = HashSet::new();
    let mut stack: Vec<(usize, &Span)> =
        by_start(roots).into_iter().rev().map(|s| (0, s)).collect();
    loop {
        let Some((depth, span)) = stack.pop() else {
            // Left over: spans in a loop of parents.
            match spans.iter().find(|span| !shown.contains(&span.span_id)) {
                Some(span) => stack.push((0, span)),
                None => break,
            }
            continue;
        };
        if !shown.insert(&span.span_id) {
            continue;
        }
        lines.push((depth, span));
        let under = children.remove(span.span_id.as_str()).unwrap_or_default();
        stack.extend(by_start(under).into_iter().rev().map(|child| (depth + 1, child)));
    }
    lines
}

fn by_start(mut spans: Vec<&Span>) -> Vec<&Span> {
    spans.sort_by_key(|span| span.start);
    spans
}

/// Nanoseconds as a person reads them: 830µs, 12.4ms, 1.20s.
pub(crate) fn duration(nanos: u64) -> String {
    match nanos {
        0..1_000_000 => format!("{}µs", nanos / 1000),
        1_000_000..1_000_000_000 => format!("{:.1}ms", nanos as f64 / 1e6),
        _ => format!("{:.2}s", nanos as f64 / 1e9),
    }
}
