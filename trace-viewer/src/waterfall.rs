//! A trace as text, the way Jaeger draws it: one line per span, under its
//! parent, with a bar for when it ran, scaled to the whole trace; its events
//! under it. The terminal and the page show the same text.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use crate::store::{Span, Trace};

/// Characters for the whole trace's duration.
const BAR: usize = 40;

pub fn render(trace: &Trace) -> String {
    let (start, end) = trace
        .spans
        .iter()
        .fold((u64::MAX, 0), |(start, end), span| (start.min(span.start), end.max(span.end)));
    let total = end.saturating_sub(start).max(1);
    let lines = in_tree_order(&trace.spans);
    let service_width = trace.spans.iter().map(|s| s.service.chars().count()).max().unwrap_or(0);
    let label = |depth: usize, span: &Span| format!("{}{}", "  ".repeat(depth), span.name);
    let label_width = lines.iter().map(|(d, s)| label(*d, s).chars().count()).max().unwrap_or(0);

    let mut text = format!("trace {}: {} spans, {}", trace.id, trace.spans.len(), duration(total));
    if trace.dropped > 0 {
        let _ = write!(text, " ({} more spans not kept)", trace.dropped);
    }
    text.push('\n');
    for (depth, span) in lines {
        let from = ((span.start - start) as u128 * BAR as u128 / total as u128) as usize;
        let to = ((span.end - start) as u128 * BAR as u128).div_ceil(total as u128) as usize;
        let bar = format!("{}|{}|", " ".repeat(from), "=".repeat(to.saturating_sub(from + 1)));
        let _ = writeln!(
            text,
            "{:service_width$}  {:label_width$}  {:5}  {:width$}  +{} {}",
            span.service,
            label(depth, span),
            if span.error { "ERROR" } else { "" },
            bar,
            duration(span.start - start),
            duration(span.end - span.start),
            width = BAR + 1,
        );
        for (at, event) in &span.events {
            let at = duration(at.saturating_sub(start));
            let indent = "  ".repeat(depth + 1);
            let _ = writeln!(text, "{:service_width$}  {indent}· +{at} {event}", "");
        }
    }
    text
}

/// Spans with their depth, each under its parent, siblings by start time.
/// A span whose parent is not here (another process's, or not arrived yet)
/// is a root; a loop of parents, which no SDK sends, is still shown.
fn in_tree_order(spans: &[Span]) -> Vec<(usize, &Span)> {
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
fn duration(nanos: u64) -> String {
    match nanos {
        0..1_000_000 => format!("{}µs", nanos / 1000),
        1_000_000..1_000_000_000 => format!("{:.1}ms", nanos as f64 / 1e6),
        _ => format!("{:.2}s", nanos as f64 / 1e9),
    }
}
