//! The traffic as text: `--plain`, one line a second (for logs, a
//! walk-through, a screen reader), `--json`, one object a second (for
//! tests and scripts), and the summary at the end.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::step::{Feed, Known, Section, local};
use super::tally::{Outcome, Second, Totals};

/// `200: 183, 502: 12, 503: 5`
pub fn outcomes<'a>(counts: impl IntoIterator<Item = (&'a Outcome, &'a u64)>) -> String {
    let listed: Vec<String> = counts.into_iter().map(|(o, n)| format!("{o}: {n}")).collect();
    if listed.is_empty() { "nothing answered".to_string() } else { listed.join(", ") }
}

/// `0.4 ms`, `12 ms`, `2.0 s`
pub fn duration(took: Option<Duration>) -> String {
    let Some(took) = took else { return "-".to_string() };
    let ms = took.as_secs_f64() * 1000.0;
    match ms {
        ms if ms < 10.0 => format!("{ms:.1} ms"),
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms => format!("{:.1} s", ms / 1000.0),
    }
}

/// ` 12 s  200 sent  200: 190, 503: 10  p50 0.6 ms, p99 3.1 ms  circuits: …`
pub fn plain(at: u64, second: &mut Second, known: &Known) -> String {
    let (p50, p99) = (duration(second.latency(0.5)), duration(second.latency(0.99)));
    let mut line = format!(
        "{at:>3} s  {} sent  {}  p50 {p50}, p99 {p99}",
        second.requests(),
        outcomes(&second.outcomes)
    );
    let state = state_words(known);
    if !state.is_empty() {
        line.push_str("  ");
        line.push_str(&state.join("; "));
    }
    line
}

/// What the step knows, in words: what is not as it should be, and a count
/// of what is.
pub fn state_words(known: &Known) -> Vec<String> {
    let mut words = Vec::new();
    match &known.instances {
        Section::Absent => {}
        Section::Silent(_) => words.push("registry: not answering".to_string()),
        Section::Known(instances) => {
            let mut said: Vec<String> = instances
                .iter()
                .filter(|i| i.check != "passing")
                .map(|i| format!("{} {} {}", i.service, local(&i.address), i.check))
                .collect();
            let passing = instances.iter().filter(|i| i.check == "passing").count();
            said.push(format!("{passing} passing"));
            words.push(format!("registry: {}", said.join(", ")));
        }
    }
    match &known.circuits {
        Section::Absent => {}
        Section::Silent(_) => words.push("circuits: /breakers does not answer".to_string()),
        Section::Known(circuits) => {
            let not_closed: Vec<String> = circuits
                .iter()
                .filter(|c| c.state != "closed")
                .map(|c| format!("{} {} {}", c.service, local(&c.instance), c.state))
                .collect();
            match not_closed.is_empty() {
                true => words.push("circuits closed".to_string()),
                false => words.push(format!("circuits: {}", not_closed.join(", "))),
            }
        }
    }
    match &known.feeds {
        Section::Absent => {}
        Section::Silent(why) => words.push(format!("lag: {why}")),
        Section::Known(feeds) => words.push(format!("lag: {}", lag_words(feeds))),
    }
    words
}

/// `users 0, accounts 37`, and whether that is the reports' word or the last.
pub fn lag_words(feeds: &[Feed]) -> String {
    let each: Vec<String> = feeds
        .iter()
        .map(|feed| match (feed.behind(), feed.last) {
            (Some(behind), _) => format!("{} {behind}", feed.name),
            (None, Some(last)) => format!("{} at event {last}", feed.name),
            (None, None) => format!("{} not answering", feed.name),
        })
        .collect();
    let mut words = each.join(", ");
    if feeds.iter().any(|feed| !feed.reports_answer) {
        words.push_str(" (reports not answering)");
    }
    words
}

/// One object a second: the counts, and what the step knows.
pub fn json(at: u64, second: &mut Second, known: &Known, routes: &[String]) -> Value {
    let counts = |counts: &std::collections::BTreeMap<Outcome, u64>| -> Map<String, Value> {
        counts.iter().map(|(o, n)| (o.to_string(), json!(n))).collect()
    };
    let by_route: Map<String, Value> = second
        .by_route
        .iter()
        .map(|(index, c)| (routes[*index].clone(), Value::Object(counts(c))))
        .collect();
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
    let mut object = json!({
        "second": at,
        "requests": second.requests(),
        "succeeded": second.succeeded(),
        "failed": second.failed(),
        "outcomes": counts(&second.outcomes),
        "routes": by_route,
        "problems": second.problems.iter().map(|(s, d)| (s.to_string(), json!(d))).collect::<Map<_, _>>(),
        "p50_ms": ms(second.latency(0.5)),
        "p99_ms": ms(second.latency(0.99)),
    });
    let sections = [
        (
            "instances",
            section(
                &known.instances,
                |i| json!({"service": i.service, "address": i.address, "check": i.check}),
            ),
        ),
        (
            "circuits",
            section(
                &known.circuits,
                |c| json!({"service": c.service, "instance": c.instance, "state": c.state, "retry_after_seconds": c.retry_after_seconds}),
            ),
        ),
        (
            "feeds",
            section(
                &known.feeds,
                |f| json!({"feed": f.name, "applied": f.applied, "last": f.last, "behind": f.behind(), "reports_answer": f.reports_answer}),
            ),
        ),
    ];
    for (name, value) in sections {
        if let Some(value) = value {
            object[name] = value;
        }
    }
    object
}

/// A list, `{"error": why}` when not answering, nothing when absent.
fn section<T>(section: &Section<T>, each: impl Fn(&T) -> Value) -> Option<Value> {
    match section {
        Section::Absent => None,
        Section::Silent(why) => Some(json!({ "error": why })),
        Section::Known(items) => Some(items.iter().map(each).collect()),
    }
}

/// The end: totals, seconds with failures, the longest run of failures,
/// and how long success has held since the last failure.
pub fn summary(totals: &Totals, lasted: Duration) -> Vec<String> {
    let (requests, succeeded) = (totals.requests(), totals.succeeded());
    let share = if requests == 0 { 0.0 } else { succeeded as f64 * 100.0 / requests as f64 };
    let mut lines = vec![
        format!("{requests} requests in {}, {succeeded} succeeded ({share:.1} %)", seconds(lasted)),
        format!("  by status: {}", outcomes(&totals.outcomes)),
    ];
    let runs = &totals.runs;
    let (Some(first), Some(last)) = (runs.first_failure, runs.last_failure) else {
        lines.push("  no failures".to_string());
        return lines;
    };
    lines.push(format!(
        "  seconds with failures: {} of {}",
        totals.seconds_with_failures, totals.seconds
    ));
    lines.push(format!(
        "  longest run of failures: {} in a row, from {} to {}",
        runs.longest,
        seconds(runs.longest_from),
        seconds(runs.longest_until)
    ));
    let since = lasted.saturating_sub(last);
    lines.push(match since >= Duration::from_secs(1) {
        true => format!(
            "  failures from {} to {}, then success for the last {}",
            seconds(first),
            seconds(last),
            seconds(since)
        ),
        false => format!("  still failing at the end (failures from {})", seconds(first)),
    });
    lines
}

pub fn summary_json(totals: &Totals, lasted: Duration) -> Value {
    let runs = &totals.runs;
    let at = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0);
    json!({"summary": {
        "seconds": at(Some(lasted)),
        "requests": totals.requests(),
        "succeeded": totals.succeeded(),
        "outcomes": totals.outcomes.iter().map(|(o, n)| (o.to_string(), json!(n))).collect::<Map<_, _>>(),
        "seconds_with_failures": totals.seconds_with_failures,
        "longest_failure_run": runs.longest,
        "first_failure_s": at(runs.first_failure),
        "last_failure_s": at(runs.last_failure),
        "success_since_last_failure_s": at(runs.last_failure.map(|last| lasted.saturating_sub(last))),
    }})
}

/// `3.2 s`
fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
