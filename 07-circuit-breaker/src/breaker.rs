//! Circuit breakers, one per instance called: an instance that keeps failing
//! is not called for a while (the others of its service take its calls, or
//! callers get an answer at once instead of a timeout) and gets room to recover.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};
use serde_json::{Value, json};
use tracing::{info, warn};

use awc::ClientResponse;

use crate::{CallError, Discovery, Problem, Upstream};

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
/// let one stalled instance open its healthy siblings' circuits too), each
/// failsafe's state machine with its consecutive failures policy (a failure
/// rate over a window needs more calls than a workshop makes).
pub struct Breakers {
    options: BreakerOptions,
    /// By instance URL.
    by_instance: Mutex<HashMap<String, Arc<Breaker>>>,
}

type StateMachine = failsafe::StateMachine<ConsecutiveFailures<Doubling>, Events>;

/// One instance's circuit.
pub struct Breaker {
    machine: StateMachine,
    events: Events,
    /// When a call last asked for this circuit: see `FORGET_AFTER`.
    last_asked: Mutex<Instant>,
    /// failsafe lets every call through while half-open; we let one trial
    /// through at a time, so that a service that is just recovering is not
    /// hit by every waiting caller at once.
    trial_in_flight: AtomicBool,
}

impl Breakers {
    pub fn new(options: BreakerOptions) -> Self {
        Breakers { options, by_instance: Mutex::new(HashMap::new()) }
    }

    /// The next instance of `service` to call, with leave to call it (its
    /// `circuit`): one whose circuit is open is passed over; when every one
    /// is, a 503 at once, without a call.
    pub async fn find(
        &self,
        discovery: &Discovery,
        client: &awc::Client,
        service: &str,
    ) -> Result<Upstream, Problem> {
        let mut refused = None;
        for instance in discovery.find_all(client, service).await? {
            match self.of(&instance).permit() {
                Ok(permit) => return Ok(Upstream { circuit: Some(Arc::new(permit)), ..instance }),
                Err(open) => refused = Some(open),
            }
        }
        let none = || Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no instance to call");
        Err(refused.unwrap_or_else(none))
    }

    /// The circuit of `instance`, closed the first time it is asked for.
    fn of(&self, instance: &Upstream) -> Arc<Breaker> {
        let mut by_instance = self.by_instance.lock().expect("breakers");
        let breaker = by_instance.entry(instance.url.clone()).or_insert_with(|| {
            let options = &self.options;
            let events = Events::new(instance, options.breaker_failures);
            let (next, max) = (options.breaker_open_for, options.breaker_max_open_for);
            let pauses = Doubling { next, max, chosen: events.0.clone() };
            let policy = consecutive_failures(options.breaker_failures, pauses);
            let machine = failsafe::Config::new().failure_policy(policy).instrument(events.clone());
            Arc::new(Breaker {
                machine: machine.build(),
                events,
                last_asked: Mutex::new(Instant::now()),
                trial_in_flight: AtomicBool::new(false),
            })
        });
        *breaker.last_asked.lock().expect("circuit") = Instant::now();
        breaker.clone()
    }

    /// Every circuit and its state, by service and instance, for
    /// `GET /breakers` and health checks.
    pub fn states(&self) -> BTreeMap<String, BTreeMap<String, Value>> {
        let mut by_instance = self.by_instance.lock().expect("breakers");
        by_instance.retain(|_, breaker| !breaker.forgotten());
        let mut states: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (url, breaker) in by_instance.iter() {
            let service = breaker.events.0.service.clone();
            states.entry(service).or_default().insert(url.clone(), breaker.events.to_json());
        }
        states
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

impl Breaker {
    fn forgotten(&self) -> bool {
        self.last_asked.lock().expect("circuit").elapsed() > FORGET_AFTER
    }

    /// Asks to call the instance: at once 503 with Retry-After while the
    /// circuit is open (no call is made at all), or a permit to call, on
    /// which the caller records how the call went.
    pub fn permit(self: &Arc<Self>) -> Result<Permit, Problem> {
        if !self.machine.is_call_permitted() {
            return Err(self.events.open_problem());
        }
        let trial = self.events.state() == State::HalfOpen;
        if trial && self.trial_in_flight.swap(true, Ordering::SeqCst) {
            self.events.0.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(self.events.open_problem());
        }
        Ok(Permit { breaker: self.clone(), trial })
    }
}

/// Leave to call an instance, carried by its `Upstream`: each call through
/// it is recorded (`Upstream::call`); a permit dropped without a call counts
/// as nothing.
pub struct Permit {
    breaker: Arc<Breaker>,
    trial: bool,
}

impl Permit {
    /// Counts one call through this circuit: a failure when the service is
    /// to blame (no answer, too slow, a 5xx); an answer to a bad request
    /// (4xx) is the caller's mistake, and counts as a success.
    pub fn record(&self, outcome: &Result<ClientResponse, CallError>) {
        let failed = match outcome {
            Ok(answer) => answer.status().is_server_error(),
            Err(error) => error.is_upstream_fault(),
        };
        if failed {
            self.breaker.machine.on_error();
        } else {
            self.breaker.machine.on_success();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.trial_in_flight.store(false, Ordering::SeqCst);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Closed,
    Open,
    HalfOpen,
}

/// What failsafe tells us of a circuit (an `Instrument`): each change of
/// state is logged once, and kept to show it and answer Retry-After.
#[derive(Clone)]
struct Events(Arc<CircuitLog>);

struct CircuitLog {
    service: String,
    /// "service2 at http://127.0.0.1:3003", for messages.
    name: String,
    failures_to_open: u32,
    inner: Mutex<(State, Option<Instant>)>,
    /// How long failsafe chose to keep the circuit open this time.
    pause: Mutex<Duration>,
    rejected: AtomicU64,
}

impl Events {
    fn new(instance: &Upstream, failures_to_open: u32) -> Self {
        let (service, url) = (&instance.name, &instance.url);
        Events(Arc::new(CircuitLog {
            service: service.clone(),
            name: format!("{service} at {url}"),
            failures_to_open,
            inner: Mutex::new((State::Closed, None)),
            pause: Mutex::new(Duration::ZERO),
            rejected: AtomicU64::new(0),
        }))
    }

    fn state(&self) -> State {
        self.0.inner.lock().expect("circuit").0
    }

    /// Moves to `state`; the state it left.
    fn change(&self, state: State, open_until: Option<Instant>) -> State {
        let mut inner = self.0.inner.lock().expect("circuit");
        std::mem::replace(&mut *inner, (state, open_until)).0
    }

    fn open_problem(&self) -> Problem {
        let until = self.0.inner.lock().expect("circuit").1;
        let wait = until.map(|until| until.saturating_duration_since(Instant::now()));
        // Whole seconds, rounded up, and at least one.
        let seconds = wait.unwrap_or_default().as_secs_f64().ceil().max(1.0) as u64;
        let detail = format!(
            "the circuit for {} is open: it failed too often; try again in {seconds} s",
            self.0.name
        );
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    fn to_json(&self) -> Value {
        let (state, until) = *self.0.inner.lock().expect("circuit");
        let wait = until.map(|until| until.saturating_duration_since(Instant::now()));
        let (state, retry_after) = match state {
            State::Closed => ("closed", None),
            // failsafe half-opens on the next call once the pause is over.
            State::Open if wait.is_some_and(|wait| wait.is_zero()) => ("half-open", None),
            State::Open => ("open", wait.map(|wait| wait.as_secs_f64().ceil() as u64)),
            State::HalfOpen => ("half-open", None),
        };
        let rejected = self.0.rejected.load(Ordering::Relaxed);
        json!({ "state": state, "retry_after_seconds": retry_after, "rejected_calls": rejected })
    }
}

impl failsafe::Instrument for Events {
    fn on_call_rejected(&self) {
        self.0.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn on_open(&self) {
        let pause = *self.0.pause.lock().expect("circuit");
        let before = self.change(State::Open, Some(Instant::now() + pause));
        let service = &self.0.name;
        let pause = humantime::format_duration(pause);
        let what = match before {
            State::HalfOpen => "OPEN again: the trial call failed".to_string(),
            _ => format!("now OPEN after {} failures in a row", self.0.failures_to_open),
        };
        warn!("circuit for {service} is {what}; calls fail fast for {pause}");
    }

    fn on_half_open(&self) {
        self.change(State::HalfOpen, None);
        info!("circuit for {} is HALF-OPEN: one trial call goes through", self.0.name);
    }

    fn on_closed(&self) {
        // failsafe also calls this when the circuit is created: nothing to say.
        if self.change(State::Closed, None) != State::Closed {
            info!("circuit for {} is CLOSED again: the trial call succeeded", self.0.name);
        }
    }
}

/// How long a circuit stays open: `next`, doubled after each failed trial,
/// up to `max`. failsafe has an exponential backoff of its own, but it
/// cannot start below a second (tests want less) and does not say what it
/// chose; this one records it in `chosen`, for Retry-After.
#[derive(Clone)]
struct Doubling {
    next: Duration,
    max: Duration,
    chosen: Arc<CircuitLog>,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let pause = self.next.min(self.max);
        *self.chosen.pause.lock().expect("circuit") = pause;
        self.next = pause * 2;
        Some(pause)
    }
}

/// `GET /breakers`: every circuit and its state.
pub async fn breaker_states(breakers: web::Data<Breakers>) -> HttpResponse {
    HttpResponse::Ok().json(breakers.states())
}
