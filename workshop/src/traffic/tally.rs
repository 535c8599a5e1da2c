//! Counting what the requests came to: per second for the view, and over
//! the whole run for the summary (totals, seconds with errors, the longest
//! run of failures, and how long success has held since the last one).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::Failure;

/// What one request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Status(u16),
    Failed(Failure),
}

impl Outcome {
    /// A 2xx answer. Anything else is a failure as the client sees it: a
    /// 503 from an open circuit as much as a refused connection.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(200..=299))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(status) => write!(formatter, "{status}"),
            Outcome::Failed(Failure::Refused) => formatter.write_str("refused"),
            Outcome::Failed(Failure::TimedOut) => formatter.write_str("timeout"),
            Outcome::Failed(Failure::Broken) => formatter.write_str("broken"),
        }
    }
}

/// Latencies kept per second at most: more than the highest rate allows.
const MAX_LATENCIES: usize = 50_000;

/// One second of traffic.
#[derive(Default)]
pub struct Second {
    pub outcomes: BTreeMap<Outcome, u64>,
    /// The same, per route (by its place in the list of routes).
    pub by_route: BTreeMap<usize, BTreeMap<Outcome, u64>>,
    /// The `detail` of the last problem+json answer, per status.
    pub problems: BTreeMap<u16, String>,
    latencies: Vec<Duration>,
}

impl Second {
    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn succeeded(&self) -> u64 {
        self.outcomes.iter().filter(|(o, _)| o.is_success()).map(|(_, n)| n).sum()
    }

    pub fn failed(&self) -> u64 {
        self.requests() - self.succeeded()
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// The latency that `quantile` (0.5, 0.99) of the answers took at most.
    pub fn latency(&mut self, quantile: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_unstable();
        let rank = ((self.latencies.len() as f64 * quantile).ceil() as usize).max(1);
        Some(self.latencies[rank.min(self.latencies.len()) - 1])
    }
}

/// The longest run of failures in a row, and the failures' first and last.
#[derive(Clone, Copy, Default)]
pub struct Runs {
    current: u64,
    current_from: Duration,
    pub longest: u64,
    pub longest_from: Duration,
    pub longest_until: Duration,
    pub first_failure: Option<Duration>,
    pub last_failure: Option<Duration>,
}

impl Runs {
    fn add(&mut self, success: bool, at: Duration) {
        if success {
            self.current = 0;
            return;
        }
        if self.current == 0 {
            self.current_from = at;
        }
        self.current += 1;
        if self.current > self.longest {
            (self.longest, self.longest_from, self.longest_until) =
                (self.current, self.current_from, at);
        }
        self.first_failure.get_or_insert(at);
        self.last_failure = Some(at);
    }
}

/// Where the client threads record, and the view takes a second at a time.
pub struct Tally {
    started: Instant,
    now: Mutex<(Second, Runs)>,
}

impl Tally {
    pub fn new(started: Instant) -> Tally {
        Tally { started, now: Mutex::new((Second::default(), Runs::default())) }
    }

    pub fn record(&self, route: usize, outcome: Outcome, took: Duration, problem: Option<String>) {
        let at = self.started.elapsed();
        let mut now = self.now.lock().expect("tally");
        let (second, runs) = &mut *now;
        *second.outcomes.entry(outcome).or_default() += 1;
        *second.by_route.entry(route).or_default().entry(outcome).or_default() += 1;
        if let (Outcome::Status(status), Some(problem)) = (outcome, problem) {
            second.problems.insert(status, problem);
        }
        if matches!(outcome, Outcome::Status(_)) && second.latencies.len() < MAX_LATENCIES {
            second.latencies.push(took);
        }
        runs.add(outcome.is_success(), at);
    }

    /// The second that just ended, and the runs so far.
    pub fn take(&self) -> (Second, Runs) {
        let mut now = self.now.lock().expect("tally");
        (std::mem::take(&mut now.0), now.1)
    }
}

/// The whole run, for the summary.
#[derive(Default)]
pub struct Totals {
    pub seconds: u64,
    pub outcomes: BTreeMap<Outcome, u64>,
    pub seconds_with_failures: u64,
    pub runs: Runs,
}

impl Totals {
    pub fn add(&mut self, second: &Second, runs: Runs) {
        self.seconds += 1;
        for (outcome, count) in &second.outcomes {
            *self.outcomes.entry(*outcome).or_default() += count;
        }
        self.seconds_with_failures += u64::from(second.failed() > 0);
        self.runs = runs;
    }

    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn succeeded(&self) -> u64 {
        self.outcomes.iter().filter(|(o, _)| o.is_success()).map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_of_failures_is_the_first_of_that_length() {
        let mut runs = Runs::default();
        let at = Duration::from_secs;
        for (second, success) in
            [(1, false), (2, false), (3, true), (4, false), (5, false), (6, true)]
        {
            runs.add(success, at(second));
        }
        assert_eq!((runs.longest, runs.longest_from, runs.longest_until), (2, at(1), at(2)));
        assert_eq!((runs.first_failure, runs.last_failure), (Some(at(1)), Some(at(5))));
    }

    #[test]
    fn a_quantile_is_the_latency_that_many_answers_took_at_most() {
        let latencies = (1..=100).rev().map(Duration::from_millis).collect();
        let mut second = Second { latencies, ..Second::default() };
        assert_eq!(second.latency(0.5), Some(Duration::from_millis(50)));
        assert_eq!(second.latency(0.99), Some(Duration::from_millis(99)));
        assert_eq!(Second::default().latency(0.5), None);
    }
}
