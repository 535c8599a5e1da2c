//! What the running step serves, and what it knows, found by asking it as a
//! learner would with curl: the gateway's routes (`/service1/` in steps
//! 03-04, `/api/<service>/` from 05), the registry's instances and their
//! checks (04-10), the gateway's circuits at `/breakers` (07-10), and in
//! step 10 how far the reports have applied each feed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cqrs;
use super::http::{Address, Connection, Request};
use super::load::{Route, problem_detail};

/// How long a look at the step's state may wait for each answer, and how
/// long before the end of a second it starts.
const LOOK_TIMEOUT: Duration = Duration::from_secs(1);
const LOOK_AHEAD: Duration = Duration::from_millis(150);
/// Bounds on what the registry lists, however many it holds.
const MAX_SERVICES: usize = 16;
const MAX_INSTANCES: usize = 16;
const MAX_NAME: usize = 64;

/// A part of what the step knows: not in this step, not answering now
/// (and why), or what it said.
#[derive(Clone)]
pub enum Section<T> {
    Absent,
    Silent(String),
    Known(Vec<T>),
}

#[derive(Clone)]
pub struct Instance {
    pub service: String,
    /// `127.0.0.1:3003`
    pub address: String,
    /// The worst of its checks: passing, warning or critical.
    pub check: String,
}

#[derive(Clone)]
pub struct Circuit {
    pub service: String,
    /// `http://127.0.0.1:3003`
    pub instance: String,
    /// closed, open or half_open
    pub state: String,
    pub retry_after_seconds: Option<u64>,
}

#[derive(Clone)]
pub struct Feed {
    pub name: String,
    /// The last event the reports applied (the last they said, if they
    /// do not answer now).
    pub applied: Option<i64>,
    /// The feed's last event.
    pub last: Option<i64>,
    pub reports_answer: bool,
}

impl Feed {
    pub fn behind(&self) -> Option<i64> {
        Some((self.last? - self.applied?).max(0))
    }
}

#[derive(Clone)]
pub struct Known {
    pub instances: Section<Instance>,
    pub circuits: Section<Circuit>,
    pub feeds: Section<Feed>,
}

/// Why the traffic cannot start.
pub enum NotReady {
    /// Nothing listens at the address: the step is not running.
    NothingAnswers,
    /// The step answers, and says no: a line for the learner.
    Said(String),
}

/// Asks the step; remembers the reports' last positions.
pub struct Watcher {
    gateway: Address,
    registry: Address,
    key: String,
    has_registry: bool,
    has_breakers: bool,
    has_feeds: bool,
    applied: BTreeMap<String, i64>,
    connections: BTreeMap<String, Connection>,
}

impl Watcher {
    pub fn new(gateway: Address, registry: Address, key: &str) -> Watcher {
        Watcher {
            gateway,
            registry,
            key: key.to_string(),
            has_registry: false,
            has_breakers: false,
            has_feeds: false,
            applied: BTreeMap::new(),
            connections: BTreeMap::new(),
        }
    }

    /// Finds what the step has; the routes to call unless some were given.
    pub fn find(&mut self, given: Vec<Route>) -> Result<Vec<Route>, NotReady> {
        let gateway = self.gateway.clone();
        self.call(&gateway, &Request::get("/")).map_err(|_| NotReady::NothingAnswers)?;
        let services = self.catalog().unwrap_or_default();
        let has = |name: &str| services.iter().any(|service| service == name);
        self.has_registry = !services.is_empty();
        self.has_feeds = has("users") && has("accounts") && has("reports");
        self.has_breakers = self.get_json(&gateway, "/breakers", true).is_ok_and(|b| b.is_object());
        if !given.is_empty() {
            return Ok(given);
        }
        if self.has_feeds {
            let key = self.key.clone();
            cqrs::prepare(&key, &mut |request| self.call(&gateway, request))
                .map_err(NotReady::Said)?;
            return Ok(cqrs::routes());
        }
        self.gateway_routes()
    }

    /// `/api/service1/` and `/api/service2/`, or in steps 03-04, whose
    /// gateway has fixed routes, `/service1/` and `/service2/`.
    fn gateway_routes(&mut self) -> Result<Vec<Route>, NotReady> {
        let (gateway, key) = (self.gateway.clone(), self.key.clone());
        let with_key = |path| Request { key: Some(&key), ..Request::get(path) };
        let api = self.call(&gateway, &with_key("/api/service1/"));
        let api = api.map_err(|_| NotReady::NothingAnswers)?;
        if api.status == 401 {
            let detail = problem_detail(&api.body).unwrap_or_default();
            return Err(NotReady::Said(format!(
                "{} refuses the key `{key}` (401: {detail}); give the one it expects with --key",
                gateway.url
            )));
        }
        let fixed = api.status == 404
            && self.call(&gateway, &with_key("/service1/")).is_ok_and(|a| a.status != 404);
        let prefix = if fixed { "" } else { "/api" };
        Ok(["service1", "service2"].map(|s| Route::get(&format!("{prefix}/{s}/"))).into())
    }

    /// What the step knows now.
    pub fn look(&mut self) -> Known {
        let instances = match self.has_registry {
            false => Section::Absent,
            true => self.instances(),
        };
        let circuits = match self.has_breakers {
            false => Section::Absent,
            true => self.circuits(),
        };
        let feeds = match (self.has_feeds, &instances) {
            (true, Section::Known(instances)) => Section::Known(self.feeds(&instances.clone())),
            (true, _) => Section::Silent("the registry does not answer".to_string()),
            (false, _) => Section::Absent,
        };
        Known { instances, circuits, feeds }
    }

    /// Looks every second in a thread of its own, a moment before each of
    /// the view's seconds ends (`started` and every second after it), so
    /// that what it shows beside a second's answers is of that second.
    pub fn watch(mut self, started: Instant) -> Arc<Mutex<Known>> {
        let known = Arc::new(Mutex::new(self.look()));
        let shared = known.clone();
        thread::spawn(move || {
            // Until the view is gone: it holds the other reference.
            for second in 1.. {
                let next = started + Duration::from_secs(second) - LOOK_AHEAD;
                thread::sleep(next.saturating_duration_since(Instant::now()));
                if Arc::strong_count(&shared) == 1 {
                    break;
                }
                let look = self.look();
                *shared.lock().expect("known") = look;
            }
        });
        known
    }

    fn instances(&mut self) -> Section<Instance> {
        let services = match self.catalog() {
            Ok(services) => services,
            Err(why) => return Section::Silent(why),
        };
        let mut instances = Vec::new();
        for service in services {
            let path = format!("/v1/health/service/{}", encode(&service));
            let registry = self.registry.clone();
            let Ok(Value::Array(entries)) = self.get_json(&registry, &path, false) else {
                continue;
            };
            instances.extend(entries.iter().take(MAX_INSTANCES).filter_map(|entry| {
                let address = entry.pointer("/Service/Address").and_then(Value::as_str)?;
                let port = entry.pointer("/Service/Port").and_then(Value::as_u64)?;
                let checks = entry.get("Checks").and_then(Value::as_array)?;
                let worst = ["critical", "warning"].into_iter().find(|bad| {
                    checks
                        .iter()
                        .any(|check| check.get("Status").and_then(Value::as_str) == Some(*bad))
                });
                Some(Instance {
                    service: service.clone(),
                    address: format!("{}:{port}", short(address)),
                    check: worst.unwrap_or("passing").to_string(),
                })
            }));
        }
        Section::Known(instances)
    }

    /// The services the registry lists, bounded in number and length.
    fn catalog(&mut self) -> Result<Vec<String>, String> {
        let registry = self.registry.clone();
        let catalog = self.get_json(&registry, "/v1/catalog/services", false)?;
        let names = catalog.as_object().ok_or("the registry's catalog is not a JSON object")?;
        Ok(names.keys().filter(|n| n.len() <= MAX_NAME).take(MAX_SERVICES).cloned().collect())
    }

    fn circuits(&mut self) -> Section<Circuit> {
        let gateway = self.gateway.clone();
        let breakers = match self.get_json(&gateway, "/breakers", true) {
            Ok(Value::Object(breakers)) => breakers,
            Ok(_) => return Section::Silent("/breakers is not a JSON object".to_string()),
            Err(why) => return Section::Silent(why),
        };
        let mut circuits = Vec::new();
        for (service, instances) in breakers.iter().take(MAX_SERVICES) {
            let Some(instances) = instances.as_object() else { continue };
            for (instance, circuit) in instances.iter().take(MAX_INSTANCES) {
                let state = circuit.get("state").and_then(Value::as_str).unwrap_or("unknown");
                circuits.push(Circuit {
                    service: short(service),
                    instance: short(instance),
                    state: short(state),
                    retry_after_seconds: circuit.get("retry_after_seconds").and_then(Value::as_u64),
                });
            }
        }
        Section::Known(circuits)
    }

    fn feeds(&mut self, instances: &[Instance]) -> Vec<Feed> {
        let reports = self.first_passing(instances, "reports");
        let positions = reports.and_then(|reports| self.get_json(&reports, "/", false).ok());
        let mut feeds = Vec::new();
        for name in ["users", "accounts"] {
            let said =
                positions.as_ref().and_then(|p| p.pointer(&format!("/feeds/{name}/applied")));
            if let Some(applied) = said.and_then(Value::as_i64) {
                self.applied.insert(name.to_string(), applied);
            }
            let feed = self.first_passing(instances, name);
            let page =
                feed.and_then(|feed| self.get_json(&feed, "/events?after=0&limit=1", false).ok());
            feeds.push(Feed {
                name: name.to_string(),
                applied: self.applied.get(name).copied(),
                last: page.and_then(|page| page.get("last_seq").and_then(Value::as_i64)),
                reports_answer: positions.is_some(),
            });
        }
        feeds
    }

    /// The address of a passing instance of `service`, if there is one.
    fn first_passing(&self, instances: &[Instance], service: &str) -> Option<Address> {
        let instance = instances.iter().find(|i| i.service == service && i.check != "critical")?;
        let (host, port) = instance.address.rsplit_once(':')?;
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        Address::at(host, port.parse().ok()?).ok()
    }

    fn get_json(&mut self, address: &Address, path: &str, with_key: bool) -> Result<Value, String> {
        let key = with_key.then_some(self.key.as_str()).map(str::to_string);
        let request = Request { key: key.as_deref(), ..Request::get(path) };
        let answer = self.call(address, &request)?;
        if answer.status != 200 {
            return Err(format!("{}{path} answers {}", address.url, answer.status));
        }
        serde_json::from_slice(&answer.body).map_err(|_| format!("{}{path}: not JSON", address.url))
    }

    fn call(
        &mut self,
        address: &Address,
        request: &Request,
    ) -> Result<super::http::Answer, String> {
        if self.connections.len() > 32 {
            self.connections.clear(); // instances that came and went
        }
        let connection = self
            .connections
            .entry(address.url.clone())
            .or_insert_with(|| Connection::new(address.clone(), LOOK_TIMEOUT));
        connection.send(request, 1 << 20).map_err(|_| format!("{} does not answer", address.url))
    }
}

/// `127.0.0.1:3003` is `:3003` on the screen: every service of a step runs
/// on this machine, and the port tells them apart. Other hosts stay.
pub fn local(address: &str) -> &str {
    let address = address.strip_prefix("http://").unwrap_or(address);
    address
        .strip_prefix("127.0.0.1")
        .or_else(|| address.strip_prefix("localhost"))
        .unwrap_or(address)
}

fn short(text: &str) -> String {
    text.chars().take(MAX_NAME).collect()
}

/// A name from the registry, safe in a URL's path.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
