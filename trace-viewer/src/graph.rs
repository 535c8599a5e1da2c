//! Who calls whom, drawn as Jaeger's *System Architecture* draws it: each
//! service a box, each caller -> callee an arrow with its number of calls,
//! callers on the left of what they call. An SVG the viewer writes itself:
//! a column per call depth, each arrow a line to the next column or an arc
//! over the boxes it would cross.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::web::{Colours, escape};

/// Services drawn, those with the most calls first; the others are counted.
pub const MAX_SERVICES: usize = 20;

const BOX_WIDTH: f64 = 150.0;
const BOX_HEIGHT: f64 = 42.0;
const COLUMN_GAP: f64 = 110.0;
const ROW_GAP: f64 = 22.0;
/// Characters of a name in its box.
const NAME_WIDTH: usize = 17;

/// A box's top left corner.
#[derive(Clone, Copy)]
struct At {
    x: f64,
    y: f64,
}

/// The graph of `calls`: (caller, callee) -> how many.
pub fn render(calls: &BTreeMap<(String, String), usize>, colours: &Colours) -> String {
    let all: BTreeSet<&str> =
        calls.keys().flat_map(|(from, to)| [from.as_str(), to.as_str()]).collect();
    let drawn = busiest(calls);
    if drawn.is_empty() {
        return "<p>No calls between services yet.</p>\n".to_string();
    }
    let calls: Vec<(&str, &str, usize)> = calls
        .iter()
        .filter(|((from, to), _)| drawn.contains(from.as_str()) && drawn.contains(to.as_str()))
        .map(|((from, to), n)| (from.as_str(), to.as_str(), *n))
        .collect();
    let at = layout(&drawn, &calls);
    let mut svg = String::new();
    let (mut top, mut bottom) =
        (0.0_f64, at.values().map(|a| a.y + BOX_HEIGHT).fold(0.0, f64::max));
    for &(from, to, count) in &calls {
        let (high, low) = arrow(&mut svg, from, to, count, &at);
        (top, bottom) = (top.min(high), bottom.max(low));
    }
    boxes(&mut svg, &at, colours);
    let width = at.values().map(|a| a.x + BOX_WIDTH).fold(0.0, f64::max) + 60.0;
    let (top, height) = (top - 10.0, bottom - top + 20.0);
    let mut html = format!(
        "<svg class=\"dependencies\" viewBox=\"-10 {top:.0} {width:.0} {height:.0}\" \
         width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"Dependencies of services\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n{svg}</svg>\n"
    );
    let left_out = all.len() - drawn.len();
    if left_out > 0 {
        let _ = writeln!(html, "<p>… and {left_out} services more, not drawn.</p>");
    }
    html
}

/// A box per service, in its colour, with its name.
fn boxes(svg: &mut String, at: &BTreeMap<&str, At>, colours: &Colours) {
    for (service, corner) in at {
        let name = escape(&fit(service));
        let _ = writeln!(
            svg,
            "<g class=\"service\" data-service=\"{}\"><title>{}</title>\
             <rect x=\"{:.0}\" y=\"{:.0}\" width=\"{BOX_WIDTH}\" height=\"{BOX_HEIGHT}\" rx=\"7\" fill=\"{}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{name}</text></g>",
            escape(service),
            escape(service),
            corner.x,
            corner.y,
            colours.of(service),
            corner.x + BOX_WIDTH / 2.0,
            corner.y + BOX_HEIGHT / 2.0,
        );
    }
}

/// Up to `MAX_SERVICES` services, those in the most calls first.
fn busiest(calls: &BTreeMap<(String, String), usize>) -> BTreeSet<&str> {
    let mut in_calls: BTreeMap<&str, usize> = BTreeMap::new();
    for ((from, to), n) in calls {
        *in_calls.entry(from).or_default() += n;
        *in_calls.entry(to).or_default() += n;
    }
    let mut busiest: Vec<(&str, usize)> = in_calls.into_iter().collect();
    busiest.sort_by_key(|&(service, n)| (std::cmp::Reverse(n), service));
    busiest.into_iter().take(MAX_SERVICES).map(|(service, _)| service).collect()
}

/// Where each box goes: a column per call depth, each centred on the
/// tallest.
fn layout<'a>(
    drawn: &BTreeSet<&'a str>,
    calls: &[(&'a str, &'a str, usize)],
) -> BTreeMap<&'a str, At> {
    let rows = columns(drawn, calls);
    let tallest = rows.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let mut at = BTreeMap::new();
    for (column, row) in rows.iter().enumerate() {
        // Each column centred on the tallest.
        let offset = (tallest - row.len() as f64) * (BOX_HEIGHT + ROW_GAP) / 2.0;
        for (index, &service) in row.iter().enumerate() {
            let x = column as f64 * (BOX_WIDTH + COLUMN_GAP);
            let y = offset + index as f64 * (BOX_HEIGHT + ROW_GAP);
            at.insert(service, At { x, y });
        }
    }
    at
}

/// The services of each column, left to right. A service's column is the
/// longest chain of calls that leads to it, loops of calls left out (a call
/// back to a service still being followed is drawn, but does not move it
/// right); within a column, services sit near their callers.
fn columns<'a>(
    drawn: &BTreeSet<&'a str>,
    calls: &[(&'a str, &'a str, usize)],
) -> Vec<Vec<&'a str>> {
    let back = calls_back(drawn, calls);
    let mut depth: BTreeMap<&str, usize> = drawn.iter().map(|&service| (service, 0)).collect();
    // Without the calls back, no chain is longer than there are services.
    for _ in 1..drawn.len() {
        for &(from, to, _) in calls.iter().filter(|&&(from, to, _)| !back.contains(&(from, to))) {
            if depth[to] < depth[from] + 1 {
                depth.insert(to, depth[from] + 1);
            }
        }
    }
    let columns = depth.values().max().map_or(0, |deepest| deepest + 1);
    let mut rows: Vec<Vec<&str>> = vec![Vec::new(); columns];
    let mut row_of: BTreeMap<&str, f64> = BTreeMap::new();
    for (column, row) in rows.iter_mut().enumerate() {
        // By the mean row of their callers in the columns before.
        let near = |service: &str| {
            let callers = calls.iter().filter(|&&(_, to, _)| to == service);
            let rows: Vec<f64> =
                callers.filter_map(|&(from, _, _)| row_of.get(from).copied()).collect();
            rows.iter().sum::<f64>() / rows.len().max(1) as f64
        };
        let mut here: Vec<(f64, &str)> = depth
            .iter()
            .filter(|&(_, &d)| d == column)
            .map(|(&service, _)| (near(service), service))
            .collect();
        here.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        for (index, &(_, service)) in here.iter().enumerate() {
            row_of.insert(service, index as f64);
        }
        *row = here.into_iter().map(|(_, service)| service).collect();
    }
    rows
}

/// The calls that close a loop: followed from the services nobody calls
/// (then from the others), a call to a service whose calls are still being
/// followed.
fn calls_back<'a>(
    drawn: &BTreeSet<&'a str>,
    calls: &[(&'a str, &'a str, usize)],
) -> BTreeSet<(&'a str, &'a str)> {
    let called: BTreeSet<&str> = calls.iter().map(|&(_, to, _)| to).collect();
    let first = drawn.iter().filter(|service| !called.contains(*service));
    let mut back = BTreeSet::new();
    let (mut following, mut done) = (BTreeSet::new(), BTreeSet::new());
    for &start in first.chain(drawn.iter()) {
        if done.contains(start) {
            continue;
        }
        // Depth first, without recursion: (service, whether its calls are done).
        let mut stack = vec![(start, false)];
        while let Some((service, finished)) = stack.pop() {
            if finished {
                following.remove(service);
                done.insert(service);
                continue;
            }
            if done.contains(service) || !following.insert(service) {
                continue;
            }
            stack.push((service, true));
            for &(_, to, _) in calls.iter().filter(|&&(from, _, _)| from == service) {
                if following.contains(to) {
                    back.insert((service, to));
                } else if !done.contains(to) {
                    stack.push((to, false));
                }
            }
        }
    }
    back
}

/// Draws one arrow and its count; returns how high and how low it goes.
fn arrow(
    svg: &mut String,
    from: &str,
    to: &str,
    count: usize,
    at: &BTreeMap<&str, At>,
) -> (f64, f64) {
    let (a, b) = (at[from], at[to]);
    let (path, label, reach) = if (b.x - a.x - (BOX_WIDTH + COLUMN_GAP)).abs() < 1.0 {
        // To the next column: a straight line.
        let (x1, y1, x2, y2) =
            (a.x + BOX_WIDTH, a.y + BOX_HEIGHT / 2.0, b.x, b.y + BOX_HEIGHT / 2.0);
        let label = ((x1 + x2) / 2.0, (y1 + y2) / 2.0 - 6.0);
        (format!("M{x1:.0},{y1:.0} L{x2:.0},{y2:.0}"), label, (0.0, 0.0))
    } else {
        // Further, back, or within a column: an arc over (or under) every
        // box between, from a box that has none above it (or below it).
        let (low, high) = (a.x.min(b.x), a.x.max(b.x));
        let between: Vec<At> =
            at.values().filter(|c| c.x > low - 1.0 && c.x < high + 1.0).copied().collect();
        let column = |c: At| at.values().filter(move |o| (o.x - c.x).abs() < 1.0);
        let first = |c: At| column(c).all(|o| o.y >= c.y);
        let last = |c: At| column(c).all(|o| o.y <= c.y);
        let over = (first(a) && first(b)) || !(last(a) && last(b));
        let lift = 30.0 + (high - low) / 16.0;
        let (y1, y2, side) = match over {
            true => (a.y, b.y, between.iter().map(|c| c.y).fold(f64::INFINITY, f64::min) - lift),
            false => {
                let lowest = between.iter().map(|c| c.y).fold(f64::NEG_INFINITY, f64::max);
                (a.y + BOX_HEIGHT, b.y + BOX_HEIGHT, lowest + BOX_HEIGHT + lift)
            }
        };
        let forward = b.x >= a.x;
        let x1 = a.x + BOX_WIDTH * if forward { 0.7 } else { 0.3 };
        let x2 = b.x + BOX_WIDTH * if forward { 0.3 } else { 0.7 };
        // The middle of the curve, where its count goes.
        let middle = (y1 + y2) / 8.0 + side * 0.75;
        let label = ((x1 + x2) / 2.0, if over { middle - 6.0 } else { middle + 18.0 });
        let path = format!("M{x1:.0},{y1:.0} C{x1:.0},{side:.0} {x2:.0},{side:.0} {x2:.0},{y2:.0}");
        (path, label, (middle - 24.0, middle + 24.0))
    };
    let times = if count == 1 { "call" } else { "calls" };
    let _ = writeln!(
        svg,
        "<g class=\"call\" data-from=\"{}\" data-to=\"{}\"><title>{} → {}: {count} {times}</title>\
         <path d=\"{path}\" marker-end=\"url(#arrow)\"/><text x=\"{:.0}\" y=\"{:.0}\">{count}</text></g>",
        escape(from),
        escape(to),
        escape(from),
        escape(to),
        label.0,
        label.1,
    );
    reach
}

/// A name cut to fit its box.
fn fit(name: &str) -> String {
    match name.char_indices().nth(NAME_WIDTH) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}
