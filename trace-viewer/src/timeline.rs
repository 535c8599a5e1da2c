//! A trace on the page, as Jaeger's trace view draws it: a row per span,
//! under its parent, with a bar placed and sized by when it ran on the
//! trace's time line, in its service's colour or red if it failed, and its
//! duration beside it. A click on a row opens what the span carried: its
//! attributes (Jaeger's *Tags*) and events (*Logs*). HTML and CSS only.

use std::fmt::Write;

use crate::store::{Dropped, Span, Trace};
use crate::waterfall::{MAX_INDENT, duration, in_tree_order};
use crate::web::{Colours, escape};

/// Bytes of one trace on the page: the spans that do not fit are counted.
pub const MAX_TRACE_HTML: usize = 512 * 1024;

/// Where a span's bar goes on its trace's time line.
struct TimeLine {
    start: u64,
    total: u64,
}

impl TimeLine {
    /// How far into the trace `at` is, in per cent.
    fn percent(&self, at: u64) -> f64 {
        at.saturating_sub(self.start) as f64 * 100.0 / self.total as f64
    }
}

pub fn render(trace: &Trace, colours: &Colours) -> String {
    let (start, end) = trace
        .spans
        .iter()
        .fold((u64::MAX, 0), |(start, end), span| (start.min(span.start), end.max(span.end)));
    let time = TimeLine { start, total: end.saturating_sub(start).max(1) };
    let lines = in_tree_order(&trace.spans);
    let mut html = header(trace, lines.first().map(|&(_, root)| root), &time);
    for (index, &(depth, span)) in lines.iter().enumerate() {
        let row = row(&trace.id, depth, span, &time, colours);
        if html.len() + row.len() > MAX_TRACE_HTML {
            let events: usize = lines[index..].iter().map(|(_, span)| span.events.len()).sum();
            let _ = writeln!(
                html,
                "<p class=\"more\">… and {} spans and {events} events more, not shown: \
                 a trace's part of the page stops at {} KiB.</p>",
                lines.len() - index,
                MAX_TRACE_HTML / 1024
            );
            break;
        }
        html.push_str(&row);
    }
    html.push_str("</article>\n");
    html
}

/// The trace's title (its first span, how many spans, how long, how many
/// failed), what was not kept of it, and the time line's scale.
fn header(trace: &Trace, root: Option<&Span>, time: &TimeLine) -> String {
    let id = escape(&trace.id);
    let errors = trace.spans.iter().filter(|span| span.error).count();
    let mut html = format!("<article class=\"trace\" id=\"{id}\">\n<h3>");
    if let Some(root) = root {
        let _ = write!(html, "<span>{}: {}</span>", escape(&root.service), escape(&root.name));
    }
    let _ = write!(
        html,
        "<span class=\"facts\">{} spans · {}",
        trace.spans.len(),
        duration(time.total)
    );
    if errors > 0 {
        let _ = write!(html, " · <span class=\"failed\">{errors} failed</span>");
    }
    let _ = writeln!(html, "</span><code>{id}</code></h3>");
    if trace.dropped != Dropped::default() {
        let _ = writeln!(
            html,
            "<p class=\"dropped\">(not kept: {})</p>",
            escape(&trace.dropped.to_string())
        );
    }
    html.push_str(
        "<div class=\"axis\"><span class=\"label\">service and span</span><span class=\"lane\">",
    );
    for quarter in 0..=4u64 {
        let _ = write!(
            html,
            "<i style=\"left:{}%\">{}</i>",
            quarter * 25,
            duration(time.total * quarter / 4)
        );
    }
    html.push_str("</span></div>\n");
    html
}

/// One span: its row (service, name, bar, duration, a mark per event), and
/// under it, opened by a click, its details.
fn row(trace_id: &str, depth: usize, span: &Span, time: &TimeLine, colours: &Colours) -> String {
    let (left, right) = (time.percent(span.start), time.percent(span.end));
    let class = if span.error { "span error" } else { "span" };
    let deeper = if depth > MAX_INDENT { format!("({depth}) ") } else { String::new() };
    let mut html = format!(
        "<details class=\"{class}\" id=\"{}-{}\" style=\"--c:{};--d:{}\"><summary>\
         <span class=\"label\"><span class=\"service\">{}</span> <span class=\"name\">{deeper}{}</span></span>\
         <span class=\"lane\"><span class=\"bar\" style=\"left:{left:.2}%;width:{:.2}%\"></span>",
        escape(trace_id),
        escape(&span.span_id),
        colours.of(&span.service),
        depth.min(MAX_INDENT),
        escape(&span.service),
        escape(&span.name),
        right - left,
    );
    for (at, _) in &span.events {
        let _ = write!(html, "<i class=\"mark\" style=\"left:{:.2}%\"></i>", time.percent(*at));
    }
    // The duration after the bar, or before it if the bar ends near the
    // right edge, or on it if the bar takes nearly the whole line.
    let took = duration(span.end - span.start);
    let place = match (left, right) {
        (_, right) if right <= 75.0 => format!("after\" style=\"left:{right:.2}%"),
        (left, _) if left >= 25.0 => format!("before\" style=\"right:{:.2}%", 100.0 - left),
        (left, _) => format!("on\" style=\"left:{left:.2}%"),
    };
    let _ = writeln!(html, "<span class=\"took {place}\">{took}</span></span></summary>");
    html.push_str(&details(span, time));
    html.push_str("</details>\n");
    html
}

/// What a span carried: its kind, timing and id, why it failed, its
/// attributes and its events.
fn details(span: &Span, time: &TimeLine) -> String {
    let mut html = format!(
        "<div class=\"detail\"><p>{} span of {} · at +{} · took {} · id <code>{}</code>",
        span.kind,
        escape(&span.service),
        duration(span.start - time.start),
        duration(span.end - span.start),
        escape(&span.span_id),
    );
    if span.error {
        let why = if span.status.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&span.status))
        };
        let _ = write!(html, " · <span class=\"failed\">failed{why}</span>");
    }
    html.push_str("</p>\n");
    if !span.attributes.is_empty() {
        html.push_str("<table>");
        for (key, value) in &span.attributes {
            let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(value));
        }
        html.push_str("</table>\n");
    }
    if !span.events.is_empty() {
        html.push_str("<ol class=\"events\">");
        for (at, event) in &span.events {
            let at = duration(at.saturating_sub(time.start));
            let _ = write!(html, "<li><span class=\"at\">+{at}</span> {}</li>", escape(event));
        }
        html.push_str("</ol>\n");
    }
    let (events, attributes) = (span.dropped_events, span.dropped_attributes);
    if events + attributes > 0 {
        let _ =
            writeln!(html, "<p>Not kept: {events} events and {attributes} attributes more.</p>");
    }
    html.push_str("</div>");
    html
}
