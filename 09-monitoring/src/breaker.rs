//! Circuit breakers, one per instance called: an instance that keeps failing
//! is not called for a while (the others of its service take its calls, or
//! callers get an answer at once instead of a timeout) and gets room to recover.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use awc::ClientResponse;

use crate::platform::Problem;
use crate::{CallError, Upstream};

/// How the circuit breakers behave (each option can also be set in the environment).
#[derive(clap::Args, Debug, Clone)]
pub struct BreakerOptions {
    /// Failures in a row that open a service's circuit
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,

    /// How long a circuit stays open the first time ("5s"); each failed
    /// trial doubles it
    #[arg(long, env = "BREAKER_OPEN_FOR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub breaker_open_for: Duration,

    /// The longest a circuit stays open ("60s")
    #[arg(long, env = "BREAKER_MAX_OPEN_FOR", default_value = "60s", value_parser = humantime::parse_duration)]
    pub breaker_max_open_for: Duration,
}

/// A circuit breaker per instance this service calls (one per service would
/// let one stalled instance open its healthy siblings' circuits too).
pub struct Breakers {
    options: BreakerOptions,
    /// By instance URL.
    by_instance: Mutex<HashMap<String, Arc<Breaker>>>,
}

impl Breakers {
    pub fn new(options: BreakerOptions) -> Self {
        Breakers { options, by_instance: Mutex::new(HashMap::new()) }
    }

    /// The first of `instances` (a service's, in turn) whose circuit lets
    /// a call through, now watched by it; when every one is open, a 503 at
    /// once, without a call. The circuits of the service's other instances
    /// are forgotten.
    pub fn first_closed(
        &self,
        service: &str,
        instances: Vec<Upstream>,
    ) -> Result<Option<Upstream>, Problem> {
        self.forget_unlisted(service, &instances);
        let mut refused = None;
        for instance in instances {
            let breaker = self.of(&instance);
            match breaker.admit() {
                Ok(()) => return Ok(Some(Upstream { breaker: Some(breaker), ..instance })),
                Err(open) => refused = Some(open),
            }
        }
        refused.map_or(Ok(None), Err)
    }

    /// Forgets the circuits of `service`'s instances that discovery no longer
    /// lists (gone, or failing their checks): one that comes back starts closed.
    fn forget_unlisted(&self, service: &str, listed: &[Upstream]) {
        let mut by_instance = self.by_instance.lock().expect("breakers");
        by_instance.retain(|url, breaker| {
            breaker.circuit.service != service || listed.iter().any(|instance| instance.url == *url)
        });
    }

    /// The circuit of `instance`, closed the first time it is asked for.
    fn of(&self, instance: &Upstream) -> Arc<Breaker> {
        let mut by_instance = self.by_instance.lock().expect("breakers");
        let breaker = by_instance
            .entry(instance.url.clone())
            .or_insert_with(|| Arc::new(Breaker::new(instance, &self.options)));
        *breaker.last_asked.lock().expect("circuit") = Instant::now();
        breaker.clone()
    }

    /// Every circuit and its state, by service and instance, for
    /// `GET /breakers` and health checks.
    pub fn states(&self) -> BTreeMap<String, BTreeMap<String, Value>> {
        let by_instance = self.remembered();
        let mut states: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (url, breaker) in by_instance.iter() {
            let service = breaker.circuit.service.clone();
            states.entry(service).or_default().insert(url.clone(), breaker.to_json());
        }
        states
    }

    /// The circuits, less those not asked for in `FORGET_AFTER`.
    fn remembered(&self) -> MutexGuard<'_, HashMap<String, Arc<Breaker>>> {
        let mut by_instance = self.by_instance.lock().expect("breakers");
        by_instance.retain(|_, breaker| !breaker.forgotten());
        by_instance
    }

    /// Each circuit, for `circuit_breaker_state`: its service, its instance
    /// and its state's name (`closed`, `half_open`, `open`).
    pub fn circuits(&self) -> Vec<(String, String, &'static str)> {
        let by_instance = self.remembered();
        let each = |breaker: &Arc<Breaker>| {
            let circuit = &breaker.circuit;
            let state = circuit.state.lock().expect("circuit").label();
            (circuit.service.clone(), circuit.instance.clone(), state)
        };
        by_instance.values().map(each).collect()
    }

    /// A health check: warn while a circuit is open (calls to that instance
    /// fail fast, so this one is degraded).
    pub fn check(&self) -> Result<String, String> {
        let mut open = Vec::new();
        for (service, instances) in self.states() {
            for (url, state) in instances {
                if let Some(state) = state["state"].as_str().filter(|state| *state != "closed") {
                    open.push(format!("{service} at {url} ({state})"));
                }
            }
        }
        if open.is_empty() {
            return Ok("every circuit is closed".to_string());
        }
        Err(format!("not closed: {}", open.join(", ")))
    }
}

/// A circuit not asked for in this long is forgotten: its instance is gone
/// or no longer called, and would keep this service's health at warn for
/// nothing. One that comes back starts closed.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// One instance's circuit: failsafe's state machine, with its consecutive
/// failures policy (a failure rate over a window needs more calls than a
/// workshop makes), and what it tells us of its changes (`Changes`).
pub struct Breaker {
    machine: failsafe::StateMachine<ConsecutiveFailures<Doubling>, Changes>,
    circuit: Arc<Circuit>,
    /// When a call last asked for this circuit: see `FORGET_AFTER`.
    last_asked: Mutex<Instant>,
}

/// What we know of a circuit, shared by its `Breaker`, failsafe's
/// `Changes` and the `Doubling` pauses.
struct Circuit {
    service: String,
    instance: String,
    /// "service2 at http://127.0.0.1:3003", for messages.
    name: String,
    failures_to_open: u32,
    state: Mutex<CircuitState>,
    /// A trial still under way after this long was abandoned (its caller
    /// went away before its call ended): the next call may try.
    trial_at_most: Duration,
    /// The pause failsafe chose when it last opened the circuit.
    pause: Mutex<Duration>,
    /// Calls refused (`Breaker::reject`).
    rejected: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CircuitState {
    /// Every call goes through.
    Closed,
    /// No call goes through; failsafe half-opens it on the first call after `until`.
    Open { until: Instant },
    /// One trial at a time goes through (failsafe would let every call), so
    /// that a service just recovering is not hit by every waiting caller.
    HalfOpen { trial_since: Option<Instant> },
}

impl CircuitState {
    /// The state's name in the metrics (`circuit_breaker_state`).
    fn label(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen { .. } => "half_open",
        }
    }
}

impl Breaker {
    fn new(instance: &Upstream, options: &BreakerOptions) -> Self {
        let circuit = Arc::new(Circuit {
            service: instance.name.clone(),
            instance: instance.url.clone(),
            name: format!("{} at {}", instance.name, instance.url),
            failures_to_open: options.breaker_failures,
            state: Mutex::new(CircuitState::Closed),
            // A trial's call ends within its deadline: twice that is plenty.
            trial_at_most: instance.timeout * 2,
            pause: Mutex::new(Duration::ZERO),
            rejected: AtomicU64::new(0),
        });
        let (next, max) = (options.breaker_open_for, options.breaker_max_open_for);
        let pauses = Doubling { next, max, circuit: circuit.clone() };
        let policy = consecutive_failures(options.breaker_failures, pauses);
        let changes = Changes { circuit: circuit.clone() };
        let machine = failsafe::Config::new().failure_policy(policy).instrument(changes).build();
        Breaker { machine, circuit, last_asked: Mutex::new(Instant::now()) }
    }

    fn forgotten(&self) -> bool {
        self.last_asked.lock().expect("circuit").elapsed() > FORGET_AFTER
    }

    /// Asks leave to call the instance: at once 503 with Retry-After while
    /// the circuit is open (no call is made at all). While it is half-open,
    /// the caller let through makes the trial; the others are refused until
    /// it has told how its call went (`record`).
    pub fn admit(&self) -> Result<(), Problem> {
        // Each decision is an event in the request's trace (and a debug log line).
        let name = &self.circuit.name;
        if !self.machine.is_call_permitted() {
            debug!(circuit = "open", "circuit for {name} is open: no call made");
            return Err(self.reject());
        }
        let mut state = self.circuit.state.lock().expect("circuit");
        match *state {
            CircuitState::Closed => {}
            // No trial under way (or its caller went away before its call
            // ended): this call is the trial.
            CircuitState::HalfOpen { trial_since }
                if trial_since.is_none_or(|since| since.elapsed() > self.circuit.trial_at_most) =>
            {
                *state = CircuitState::HalfOpen { trial_since: Some(Instant::now()) };
            }
            // A trial is under way, or about to be: failsafe has let this call
            // through, but `Changes` has yet to hear that it half-opened.
            CircuitState::HalfOpen { .. } | CircuitState::Open { .. } => {
                drop(state);
                debug!(
                    circuit = "half-open",
                    "circuit for {name} has a trial under way: no call made"
                );
                return Err(self.reject());
            }
        }
        let circuit = if *state == CircuitState::Closed { "closed" } else { "half-open" };
        debug!(circuit, "circuit for {name} lets the call through");
        Ok(())
    }

    /// Counts a call through this circuit: a failure when the service is to
    /// blame (no answer, too slow, a 5xx); an answer to a bad request (4xx)
    /// is the caller's mistake, and counts as a success.
    pub fn record(&self, outcome: &Result<ClientResponse, CallError>) {
        let failed = match outcome {
            Ok(answer) => answer.status().is_server_error(),
            Err(error) => error.is_upstream_fault(),
        };
        if failed {
            self.machine.on_error();
        } else {
            self.machine.on_success();
        }
    }

    /// Refuses a call: 503, and when to try again.
    fn reject(&self) -> Problem {
        self.circuit.rejected.fetch_add(1, Ordering::Relaxed);
        let wait = match *self.circuit.state.lock().expect("circuit") {
            CircuitState::Open { until } => until.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        };
        // Whole seconds, rounded up, and at least one.
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let name = &self.circuit.name;
        let detail = format!(
            "the circuit for {name} is open: it failed too often; try again in {seconds} s"
        );
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    fn to_json(&self) -> Value {
        let now = Instant::now();
        let (state, retry_after) = match *self.circuit.state.lock().expect("circuit") {
            CircuitState::Closed => ("closed", None),
            // Its pause is over: the next call half-opens it.
            CircuitState::Open { until } if until <= now => ("half-open", None),
            CircuitState::Open { until } => {
                ("open", Some((until - now).as_secs_f64().ceil() as u64))
            }
            CircuitState::HalfOpen { .. } => ("half-open", None),
        };
        let rejected = self.circuit.rejected.load(Ordering::Relaxed);
        json!({ "state": state, "retry_after_seconds": retry_after, "rejected_calls": rejected })
    }
}

/// failsafe's `Instrument`: it tells us of each change of a circuit's state,
/// which is logged once, and kept in `Circuit`.
struct Changes {
    circuit: Arc<Circuit>,
}

impl Changes {
    /// Moves the circuit to `state`; the state it left.
    fn change(&self, state: CircuitState) -> CircuitState {
        let before = std::mem::replace(&mut *self.circuit.state.lock().expect("circuit"), state);
        let (service, instance) = (&self.circuit.service, &self.circuit.instance);
        crate::monitoring::record_circuit(service, instance, before.label(), state.label());
        before
    }
}

impl failsafe::Instrument for Changes {
    fn on_call_rejected(&self) {} // counted in `Breaker::reject`

    fn on_open(&self) {
        let circuit = &self.circuit;
        let pause = *circuit.pause.lock().expect("circuit");
        let what = match self.change(CircuitState::Open { until: Instant::now() + pause }) {
            CircuitState::HalfOpen { .. } => "OPEN again: the trial call failed".to_string(),
            _ => format!("now OPEN after {} failures in a row", circuit.failures_to_open),
        };
        let (name, pause) = (&circuit.name, humantime::format_duration(pause));
        warn!("circuit for {name} is {what}; calls fail fast for {pause}");
    }

    fn on_half_open(&self) {
        self.change(CircuitState::HalfOpen { trial_since: None });
        info!("circuit for {} is HALF-OPEN: one trial call goes through", self.circuit.name);
    }

    fn on_closed(&self) {
        // failsafe also calls this when the circuit is created: nothing to say.
        if self.change(CircuitState::Closed) != CircuitState::Closed {
            info!("circuit for {} is CLOSED again: the trial call succeeded", self.circuit.name);
        }
    }
}

/// How long a circuit stays open: `next`, doubled after each failed trial,
/// up to `max`. failsafe has an exponential backoff of its own, but it
/// cannot start below a second (tests want less) and does not say what it
/// chose; this one tells the circuit, for its log line and Retry-After.
#[derive(Clone)]
struct Doubling {
    next: Duration,
    max: Duration,
    circuit: Arc<Circuit>,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let pause = self.next.min(self.max);
        *self.circuit.pause.lock().expect("circuit") = pause;
        self.next = pause * 2;
        Some(pause)
    }
}

/// `GET /breakers`: every circuit and its state.
pub async fn breaker_states(breakers: web::Data<Breakers>) -> HttpResponse {
    HttpResponse::Ok().json(breakers.states())
}
