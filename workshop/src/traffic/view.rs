//! The live view: one screen, redrawn every second, that fits 80x24 and
//! reads on a projector. The last second's answers, a chart of the last
//! minute (a kill -9 is a dip, an open circuit a run of fast 503s,
//! recovery the climb back), and what the step knows beside it. Each kind
//! of answer has a glyph of its own as well as a colour, for a terminal
//! without colour (NO_COLOR) and for every reader.

use std::collections::VecDeque;
use std::io::{self, Write};

use super::lines::{duration, lag_words, outcomes};
use super::step::{Circuit, Feed, Instance, Known, Section, local};
use super::tally::{Outcome, Second};
use crate::terminal::Style;

const WIDTH: usize = 80;
/// The chart: a column per second of the last minute, this many rows high.
const SECONDS: usize = 60;
const ROWS: usize = 8;

/// What a column of the chart is made of, bottom to top.
#[derive(Clone, Copy, Default)]
struct Column {
    succeeded: u64,
    /// 503: what the patterns answer at once (an open circuit, no healthy
    /// instance), the "fast failures".
    unavailable: u64,
    other_failures: u64,
}

pub struct Screen {
    title: String,
    rate: u32,
    history: VecDeque<Column>,
    drawn: bool,
}

impl Screen {
    pub fn new(title: String, rate: u32) -> Screen {
        Screen { title, rate, history: VecDeque::new(), drawn: false }
    }

    pub fn draw(&mut self, at: u64, second: &mut Second, known: &Known, routes: &[String]) {
        let unavailable = second.count(Outcome::Status(503));
        self.history.push_back(Column {
            succeeded: second.succeeded(),
            unavailable,
            other_failures: second.failed() - unavailable,
        });
        if self.history.len() > SECONDS {
            self.history.pop_front();
        }
        let mut lines =
            vec![fit(&format!("{}  {}:{:02}", self.title, at / 60, at % 60)), String::new()];
        lines.extend(self.last_second(second, routes));
        lines.push(String::new());
        lines.extend(self.chart());
        lines.push(String::new());
        lines.extend(state(known));
        // Home, each line over the last frame's, then clear what is left.
        let mut out = String::from(if self.drawn { "\x1b[H" } else { "\x1b[?25l\x1b[2J\x1b[H" });
        for line in lines {
            out.push_str(&line);
            out.push_str("\x1b[K\n");
        }
        out.push_str("\x1b[J");
        let mut stdout = io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
        self.drawn = true;
    }

    /// Shows the cursor again, below the last frame.
    pub fn close(&self) {
        print!("\x1b[?25h");
    }

    fn last_second(&self, second: &mut Second, routes: &[String]) -> Vec<String> {
        let (p50, p99) = (duration(second.latency(0.5)), duration(second.latency(0.99)));
        let head = format!("last second  {:>5} sent  ", second.requests());
        let tail = format!("  p50 {p50}  p99 {p99}");
        let mut lines = vec![format!(
            "{}{}{}",
            Style::Bold.paint(&head),
            painted(&second.outcomes.iter().map(|(o, n)| (*o, *n)).collect::<Vec<_>>()),
            tail
        )];
        let first_of_its_kind =
            |(index, route): &(usize, &String)| !routes[..*index].contains(route);
        for (index, route) in routes.iter().enumerate().filter(first_of_its_kind).take(4) {
            let counts = second.by_route.get(&index).cloned().unwrap_or_default();
            let label: String = route.chars().take(34).collect();
            let sent: u64 = counts.values().sum();
            let counts: Vec<(Outcome, u64)> = counts.into_iter().collect();
            lines.push(format!("  {label:<34} {sent:>5}   {}", painted(&counts)));
        }
        for (status, detail) in second.problems.iter().rev().take(2) {
            lines.push(fit(&format!("  {status}: {detail}")));
        }
        lines
    }

    fn chart(&self) -> Vec<String> {
        let highest = self.history.iter().map(|c| c.succeeded + c.unavailable + c.other_failures);
        let (highest, rate) = (highest.max().unwrap_or(0), u64::from(self.rate));
        // The rate, unless the seconds go well over it (a second's jitter).
        let top = if highest <= rate + rate / 10 { nice(rate) } else { nice(highest) };
        let legend = format!(
            "{} 2xx  {} 503  {} other failures",
            Style::Success.paint("█"),
            Style::Warning.paint("▒"),
            Style::Failure.paint("░")
        );
        let mut lines =
            vec![format!("{}   {legend}", Style::Bold.paint("requests a second, the last minute"))];
        let blank = SECONDS - self.history.len();
        for row in (0..ROWS).rev() {
            let label = match row {
                r if r == ROWS - 1 => top.to_string(),
                r if r == ROWS / 2 - 1 => (top / 2).to_string(),
                _ => String::new(),
            };
            let mut line = format!("{label:>6} │{}", " ".repeat(blank));
            for column in &self.history {
                line.push_str(&cell(column, row, top));
            }
            lines.push(line);
        }
        lines.push(format!("{:>6} └{}", 0, "─".repeat(SECONDS)));
        lines.push(format!("{:8}-60 s{:>width$}", "", "now", width = SECONDS - 5));
        lines
    }
}

/// The glyph of one cell: what the column holds at the cell's middle,
/// bottom to top 2xx, 503, other failures. Failures too few to fill a cell
/// of their own still show, in the column's top cell.
fn cell(column: &Column, row: usize, top: u64) -> String {
    let per_row = top as f64 / ROWS as f64;
    let middle = |row: usize| (row as f64 + 0.5) * per_row;
    let succeeded = column.succeeded as f64;
    let unavailable = succeeded + column.unavailable as f64;
    let total = (unavailable + column.other_failures as f64).max(middle(0));
    let top_cell = middle(row) <= total && middle(row + 1) > total;
    let few = |count: u64| count > 0 && (count as f64) < per_row;
    match middle(row) {
        _ if top_cell && few(column.other_failures) => Style::Failure.paint("░"),
        _ if top_cell && few(column.unavailable) => Style::Warning.paint("▒"),
        level if level < succeeded => Style::Success.paint("█"),
        level if level < unavailable => Style::Warning.paint("▒"),
        level if level < total && column.other_failures > 0 => Style::Failure.paint("░"),
        _ => " ".to_string(),
    }
}

/// A few words painted alike, and groups of them kept on one line.
type Words = Vec<(String, Option<Style>)>;

/// The registry, the circuits, the lag: a line or two each.
fn state(known: &Known) -> Vec<String> {
    let mut lines = Vec::new();
    let lag = |feeds: &[Feed]| vec![vec![(lag_words(feeds), None)]];
    let sections = [
        ("registry", section(&known.instances, registry)),
        ("circuits", section(&known.circuits, circuits)),
        ("lag", section(&known.feeds, lag)),
    ];
    for (label, groups) in sections {
        if let Some(groups) = groups {
            lines.extend(wrapped(label, &groups));
        }
    }
    lines
}

/// `service2 :3003 passing :3013 critical`, a group per service.
fn registry(instances: &[Instance]) -> Vec<Words> {
    let mut groups: Vec<Words> = Vec::new();
    // The gateway is what the traffic goes through: said only when it is not well.
    let shown = instances.iter().filter(|i| i.service != "gateway" || i.check != "passing");
    let shown: Vec<&Instance> = shown.collect();
    for (index, instance) in shown.iter().enumerate() {
        if index == 0 || shown[index - 1].service != instance.service {
            groups.push(vec![(instance.service.clone(), None)]);
        }
        let style = match instance.check.as_str() {
            "passing" => Style::Success,
            "warning" => Style::Warning,
            _ => Style::Failure,
        };
        let group = groups.last_mut().expect("a group");
        group.push((local(&instance.address).to_string(), None));
        group.push((instance.check.clone(), Some(style)));
    }
    groups
}

/// `service2 :3003 OPEN 4 s`, a group per circuit.
fn circuits(circuits: &[Circuit]) -> Vec<Words> {
    if circuits.is_empty() {
        return vec![vec![("none yet: no call made".to_string(), None)]];
    }
    let state = |circuit: &Circuit| match (circuit.state.as_str(), circuit.retry_after_seconds) {
        ("closed", _) => (Style::Success, "closed".to_string()),
        ("open", Some(after)) => (Style::Failure, format!("OPEN {after} s")),
        ("open", None) => (Style::Failure, "OPEN".to_string()),
        (other, _) => (Style::Warning, other.replace('_', "-")),
    };
    let group = |circuit: &Circuit| {
        let (style, state) = state(circuit);
        let instance = format!("{} {}", circuit.service, local(&circuit.instance));
        vec![(instance, None), (state, Some(style))]
    };
    circuits.iter().map(group).collect()
}

/// The groups of a section, or why it is silent.
fn section<T>(section: &Section<T>, groups: impl Fn(&[T]) -> Vec<Words>) -> Option<Vec<Words>> {
    match section {
        Section::Absent => None,
        Section::Silent(why) => Some(vec![vec![(why.clone(), Some(Style::Failure))]]),
        Section::Known(items) => Some(groups(items)),
    }
}

/// `label` then the groups, wrapped at the screen's width, two lines at most.
fn wrapped(label: &str, groups: &[Words]) -> Vec<String> {
    const INDENT: usize = 10;
    let mut lines = vec![(Style::Bold.paint(&format!("{label:<INDENT$}")), INDENT)];
    for group in groups {
        let plain: Vec<&str> = group.iter().map(|(text, _)| text.as_str()).collect();
        let width = plain.join(" ").chars().count();
        let used = lines.last().expect("a line").1;
        if used > INDENT && used + 2 + width > WIDTH - 1 {
            if lines.len() == 2 {
                lines[1].0.push_str("  …");
                break;
            }
            lines.push((" ".repeat(INDENT), INDENT));
        }
        let (line, used) = lines.last_mut().expect("a line");
        if *used > INDENT {
            line.push_str("  ");
            *used += 2;
        }
        let painted: Vec<String> = group
            .iter()
            .map(|(text, style)| {
                let text = fit_to(text, WIDTH - INDENT - 1);
                style.map_or(text.clone(), |style| style.paint(&text))
            })
            .collect();
        line.push_str(&painted.join(" "));
        *used += width;
    }
    lines.into_iter().map(|(line, _)| line).collect()
}

/// `200: 183  502: 12`, each in its colour.
fn painted(counts: &[(Outcome, u64)]) -> String {
    if counts.is_empty() {
        return Style::Failure.paint("nothing answered");
    }
    let each: Vec<String> = counts
        .iter()
        .map(|(outcome, count)| {
            let style = match outcome {
                o if o.is_success() => Style::Success,
                Outcome::Status(503) => Style::Warning,
                _ => Style::Failure,
            };
            style.paint(&outcomes([(outcome, count)]))
        })
        .collect();
    each.join("  ")
}

/// A round number at least `n`, for the top of the chart.
fn nice(n: u64) -> u64 {
    let mut step = 1;
    while step * 10 <= n {
        step *= 10;
    }
    n.div_ceil(step).max(1) * step
}

fn fit(text: &str) -> String {
    fit_to(text, WIDTH - 1)
}

fn fit_to(text: &str, width: usize) -> String {
    match text.chars().count() > width {
        true => text.chars().take(width - 1).chain(['…']).collect(),
        false => text.to_string(),
    }
}
