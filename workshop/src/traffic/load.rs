//! The load: a few client threads, each with its own kept-alive connection,
//! sending the routes in turn at one shared pace. Never more than the rate:
//! a client that fell behind (a slow answer) does not catch up in a burst,
//! so the traffic cannot be what overloads a step.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{Address, Connection, Request};
use super::tally::{Outcome, Tally};

/// How long a request may take before it counts as timed out: longer than
/// the gateway's own deadline for a service (2 s), so that its 504 shows.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a failed answer's body kept, to read its problem's `detail`.
const PROBLEM_BYTES: usize = 4096;

/// One kind of request the clients send, in turn with the others.
pub struct Route {
    pub method: &'static str,
    pub path: String,
    /// The JSON body of the n-th request sent: a write changes something.
    pub body: Option<fn(u64) -> String>,
}

impl Route {
    pub fn get(path: &str) -> Route {
        Route { method: "GET", path: path.to_string(), body: None }
    }

    /// `/api/service2/`, or `PATCH /api/users/traffic` for another method.
    pub fn label(&self) -> String {
        match self.method {
            "GET" => self.path.clone(),
            method => format!("{method} {}", self.path),
        }
    }
}

pub struct Load {
    pub gateway: Address,
    pub key: String,
    pub routes: Vec<Route>,
    pub rate: u32,
    pub clients: u32,
}

/// The running clients; they stop when this is dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Load {
    pub fn start(self, tally: Arc<Tally>) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = Arc::new(Pacer::new(self.rate));
        let sent = Arc::new(AtomicU64::new(0));
        // Routes sent alike (step 10 reads its report twice as often) are
        // counted as one: under the place of the first.
        let labels: Vec<String> = self.routes.iter().map(Route::label).collect();
        let counted_as = labels.iter().map(|l| labels.iter().position(|o| o == l).unwrap_or(0));
        let load = Arc::new((self, counted_as.collect::<Vec<usize>>()));
        for _ in 0..load.0.clients {
            let (load, pacer, tally, stop, sent) =
                (load.clone(), pacer.clone(), tally.clone(), stop.clone(), sent.clone());
            thread::spawn(move || {
                let (load, counted_as) = (&load.0, &load.1);
                let mut connection = Connection::new(load.gateway.clone(), REQUEST_TIMEOUT);
                while !stop.load(Ordering::Relaxed) {
                    pacer.wait();
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let number = sent.fetch_add(1, Ordering::Relaxed);
                    let index = (number % load.routes.len() as u64) as usize;
                    let (outcome, took, problem) = load.send(&mut connection, index, number);
                    tally.record(counted_as[index], outcome, took, problem);
                }
            });
        }
        Running { stop }
    }

    /// Sends the n-th request, of the route at `index`.
    fn send(
        &self,
        connection: &mut Connection,
        index: usize,
        number: u64,
    ) -> (Outcome, Duration, Option<String>) {
        let route = &self.routes[index];
        let body = route.body.map(|body| body(number));
        let request = Request {
            method: route.method,
            path: &route.path,
            key: Some(&self.key),
            body: body.as_deref(),
        };
        let started = Instant::now();
        let (outcome, problem) = match connection.send(&request, PROBLEM_BYTES) {
            Ok(answer) if (200..300).contains(&answer.status) => {
                (Outcome::Status(answer.status), None)
            }
            Ok(answer) => (Outcome::Status(answer.status), problem_detail(&answer.body)),
            Err(failure) => (Outcome::Failed(failure), None),
        };
        (outcome, started.elapsed(), problem)
    }
}

/// The `detail` of a problem+json body, shortened to a line.
pub fn problem_detail(body: &[u8]) -> Option<String> {
    let problem: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = problem.get("detail")?.as_str()?;
    Some(detail.chars().take(200).collect())
}

/// Hands out turns `every` apart, across all clients.
struct Pacer {
    every: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer { every: Duration::from_secs(1) / rate.max(1), next: Mutex::new(Instant::now()) }
    }

    /// Waits for this client's next turn. A turn missed (every client was
    /// waiting for an answer) is gone: the pace restarts from now.
    fn wait(&self) {
        let turn = {
            let mut next = self.next.lock().expect("pacer");
            let turn = (*next).max(Instant::now());
            *next = turn + self.every;
            turn
        };
        thread::sleep(turn.saturating_duration_since(Instant::now()));
    }
}
