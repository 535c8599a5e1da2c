//! Service discovery, the client side: how a caller finds the instances of
//! a service to call (`Discovery`). How a service gets into the registry
//! is `registration.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web;
use serde_json::Value;
use tracing::{debug, warn};

use crate::platform::{self, Problem};
use crate::{Breakers, Upstream};

/// Client-side discovery: asks the registry for the instances of a service,
/// spreads calls over the healthy ones (passing or warning, not critical) in
/// turn (round-robin), and remembers each answer for a second, so that not
/// every call costs a trip to the registry. (A second is shorter than any
/// check interval, so what it remembers is never much older than what the
/// registry knows. Consul's blocking queries, left out of this registry,
/// would push changes instead; a short memory is simpler and works for any
/// service name.) The same answer tells the gateway whether a name is a
/// service at all.
pub struct Discovery {
    registry: Upstream,
    call_timeout: Duration,
    known: Mutex<HashMap<String, Instances>>,
    /// The services the registry listed last, and when: see `no_such_service`.
    listed_services: Mutex<Option<(Instant, Vec<String>)>>,
    /// The circuit breakers of the instances called (`breaker.rs`), for a
    /// caller that keeps them.
    breakers: Option<web::Data<Breakers>>,
}

struct Instances {
    asked_at: Instant,
    /// The healthy instances' URLs.
    urls: Vec<String>,
    next: usize,
    /// When the registry last listed an instance of the service, healthy or not.
    last_listed: Option<Instant>,
}

const REMEMBER_INSTANCES_FOR: Duration = Duration::from_secs(1);

/// How long a service that had instances counts as one that exists.
const REMEMBER_SERVICES_FOR: Duration = Duration::from_secs(600);

/// The most names remembered at once. Names come from clients
/// (`/api/<name>/…`): kept for ever, each one asked for would stay.
const REMEMBER_AT_MOST: usize = 1024;

/// Makes room in `known` for one more name: the names the registry listed
/// no instance of, once their second is over, and the services not listed
/// in ten minutes go; if it is still full, the name asked for longest ago.
fn make_room(known: &mut HashMap<String, Instances>) {
    known.retain(|_, instances| {
        let listed_lately =
            instances.last_listed.is_some_and(|at| at.elapsed() < REMEMBER_SERVICES_FOR);
        listed_lately || instances.asked_at.elapsed() <= REMEMBER_INSTANCES_FOR
    });
    if known.len() >= REMEMBER_AT_MOST {
        let oldest = known.iter().min_by_key(|(_, instances)| instances.asked_at);
        if let Some(name) = oldest.map(|(name, _)| name.clone()) {
            known.remove(&name);
        }
    }
}

impl Discovery {
    /// Discovery through the registry at `registry_url`; the instances it
    /// finds are called with `call_timeout`.
    pub fn new(registry_url: String, call_timeout: Duration) -> Self {
        let registry = Upstream::new("registry", registry_url, Duration::from_secs(2));
        let (known, listed_services) = (Mutex::default(), Mutex::default());
        Discovery { registry, call_timeout, known, listed_services, breakers: None }
    }

    /// The same, whose instances are called through their circuit breakers.
    pub fn with_breakers(self, breakers: web::Data<Breakers>) -> Self {
        Discovery { breakers: Some(breakers), ..self }
    }

    /// The next passing instance of `service` to call, or the problem that
    /// there is none: 503 when none is registered and passing (or every
    /// one's circuit is open), 502 or 504 when the registry cannot be asked
    /// (and nothing is remembered).
    pub async fn find(&self, client: &awc::Client, service: &str) -> Result<Upstream, Problem> {
        let instances = self.in_turn(client, service).await?;
        let first = match &self.breakers {
            // One whose circuit is open is passed over; all open: 503 at once.
            Some(breakers) => breakers.first_closed(service, instances)?,
            None => instances.into_iter().next(),
        };
        first.ok_or_else(|| self.none_to_call(service))
    }

    /// The same, for a name a client asked for (the gateway's
    /// `/api/<name>/…`): the registry's answer also says whether there is
    /// such a service at all. One listed neither now nor in the last ten
    /// minutes is no service: 404. (Listed lately, it is down, or the
    /// registry has just restarted and not heard from it yet: 503.)
    pub async fn find_requested(
        &self,
        client: &awc::Client,
        name: &str,
    ) -> Result<Upstream, Problem> {
        match self.find(client, name).await {
            Err(none)
                if none.status_code() == StatusCode::SERVICE_UNAVAILABLE
                    && !self.listed_lately(name) =>
            {
                Err(self.no_such_service(client, name).await)
            }
            found => found,
        }
    }

    /// Whether the registry listed an instance of `service` in the last ten
    /// minutes, healthy or not.
    fn listed_lately(&self, service: &str) -> bool {
        let known = self.known.lock().expect("discovery cache");
        let last_listed = known.get(service).and_then(|instances| instances.last_listed);
        last_listed.is_some_and(|at| at.elapsed() < REMEMBER_SERVICES_FOR)
    }

    /// The instances of `service`, starting with the one whose turn it is:
    /// from what the registry said less than a second ago, or asked again.
    async fn in_turn(&self, client: &awc::Client, service: &str) -> Result<Vec<Upstream>, Problem> {
        let fresh = self.fresh(service);
        if !fresh {
            match self.ask_registry(client, service).await {
                Ok(listed) => {
                    let healthy = listed.iter().filter(|(_, healthy)| *healthy).count();
                    let instances = if healthy == 1 { "instance" } else { "instances" };
                    debug!("the registry lists {healthy} healthy {instances} of {service}");
                    self.remember(service, listed);
                }
                // Better an instance the registry knew a moment ago than none.
                Err(problem) if self.remembered_after_failure(service) => {
                    warn!("{}; calling an instance of {service} known before", problem.detail);
                }
                Err(problem) => return Err(problem),
            }
        }
        let instances = self.take_turn(service);
        if let Some(first) = instances.first().filter(|_| fresh) {
            let url = &first.url;
            debug!("{service} at {url}, from the instances the registry listed less than 1 s ago");
        }
        Ok(instances)
    }

    /// 503, and when to try again: the registry lists no instance to call.
    fn none_to_call(&self, service: &str) -> Problem {
        let detail =
            format!("no healthy instance of {service} is registered at {}", self.registry.url);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// 404, naming the services registered, as the registry listed them in
    /// the last second: names no one has, asked for by the thousand, cost
    /// it one lookup each, and one list a second.
    async fn no_such_service(&self, client: &awc::Client, name: &str) -> Problem {
        let lately = self.listed_services.lock().expect("listed services").clone();
        let registered = match lately {
            Some((at, names)) if at.elapsed() <= REMEMBER_INSTANCES_FOR => names,
            _ => match self.services(client).await {
                Ok(names) => {
                    let listed = (Instant::now(), names.clone());
                    *self.listed_services.lock().expect("listed services") = Some(listed);
                    names
                }
                Err(problem) => return problem,
            },
        };
        let detail =
            format!("no service named {name} is registered; registered: {}", registered.join(", "));
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// Whether the registry was asked for `service` less than a second ago,
    /// and its answer still stands: it had an instance to call, or it listed
    /// none of a name it has never listed (a name no one has, asked for
    /// again and again, costs one call a second, not one each). A service
    /// it has listed, with no instance to call now, is asked again: it may
    /// be passing already, and a caller that waited for that must see it.
    fn fresh(&self, service: &str) -> bool {
        let known = self.known.lock().expect("discovery cache");
        let Some(instances) = known.get(service) else { return false };
        let stands = !instances.urls.is_empty() || instances.last_listed.is_none();
        stands && instances.asked_at.elapsed() <= REMEMBER_INSTANCES_FOR
    }

    /// Remembers the instances the registry `listed` for `service`, each
    /// with whether it is healthy.
    fn remember(&self, service: &str, listed: Vec<(String, bool)>) {
        let mut known = self.known.lock().expect("discovery cache");
        // The turn goes on from where it was: starting again at the first
        // instance on every refresh would send a caller that calls less
        // than once a second to the same instance forever.
        let before = known.get(service);
        let next = before.map_or(0, |before| before.next);
        let last_listed = match listed.is_empty() {
            true => before.and_then(|before| before.last_listed),
            false => Some(Instant::now()),
        };
        let urls = listed.into_iter().filter(|(_, healthy)| *healthy).map(|(url, _)| url).collect();
        let instances = Instances { asked_at: Instant::now(), urls, next, last_listed };
        if !known.contains_key(service) {
            make_room(&mut known);
        }
        known.insert(service.to_string(), instances);
    }

    /// After a failed lookup: whether instances of `service` are remembered,
    /// however old. The lookup counts as made, so that for a second calls
    /// take what is remembered instead of each asking (and warning about) a
    /// registry that is down.
    fn remembered_after_failure(&self, service: &str) -> bool {
        let mut known = self.known.lock().expect("discovery cache");
        let Some(instances) = known.get_mut(service) else { return false };
        instances.asked_at = Instant::now();
        !instances.urls.is_empty()
    }

    /// The remembered instances of `service`, starting with the one whose
    /// turn it is; the turn moves on by one.
    fn take_turn(&self, service: &str) -> Vec<Upstream> {
        let mut known = self.known.lock().expect("discovery cache");
        let Some(instances) = known.get_mut(service).filter(|i| !i.urls.is_empty()) else {
            return Vec::new();
        };
        instances.next = (instances.next + 1) % instances.urls.len();
        let (before, from) = instances.urls.split_at(instances.next);
        let in_turn = from.iter().chain(before);
        in_turn.map(|url| Upstream::new(service, url.clone(), self.call_timeout)).collect()
    }

    /// The names of every service registered, whatever their health.
    pub async fn services(&self, client: &awc::Client) -> Result<Vec<String>, Problem> {
        let catalog = self.registry.get_json(client, "/v1/catalog/services").await?;
        Ok(catalog
            .as_object()
            .map(|services| services.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// A health check of the registry: does it answer? When it does not,
    /// calls still go to the instances known before, so it is a warning.
    pub async fn check_registry(&self, client: &awc::Client) -> Result<String, String> {
        match self.registry.get_json(client, "/v1/status/leader").await {
            Ok(_) => Ok(format!("the registry at {} answers", self.registry.url)),
            Err(problem) => Err(format!("{}; using the instances known before", problem.detail)),
        }
    }

    /// A health check of `service`, which this one calls: does an instance
    /// of it answer its own `/healthz`?
    pub async fn check_service(
        &self,
        client: &awc::Client,
        service: &str,
    ) -> Result<String, String> {
        let instance = self.in_turn(client, service).await.map_err(|problem| problem.detail)?;
        let instance =
            instance.into_iter().next().ok_or_else(|| self.none_to_call(service).detail)?;
        instance.get_json(client, "/healthz").await.map_err(|problem| problem.detail)?;
        Ok(format!("{service} at {} is healthy", instance.url))
    }

    /// Every instance of `service` the registry lists, and whether it is
    /// healthy: not critical. (Not `?passing`: it drops instances in
    /// warning too, and a service warns when one of *its* dependencies is
    /// down; taking it out of rotation for that would spread one failure to
    /// all its callers. And a service whose instances are all critical is
    /// still a service, down: a 503, not a 404.)
    async fn ask_registry(
        &self,
        client: &awc::Client,
        service: &str,
    ) -> Result<Vec<(String, bool)>, Problem> {
        // Encoded: whatever a name holds, it stays one segment of the path.
        let name = platform::path_segment(service);
        let entries = self.registry.get_json(client, &format!("/v1/health/service/{name}")).await?;
        let entries = entries.as_array().map(Vec::as_slice).unwrap_or_default();
        let healthy = |entry: &Value| {
            let checks = entry["Checks"].as_array().map(Vec::as_slice).unwrap_or_default();
            checks.iter().all(|check| check["Status"] != "critical")
        };
        Ok(entries.iter().map(|entry| (instance_url(entry), healthy(entry))).collect())
    }
}

/// Where an instance the registry lists answers.
fn instance_url(entry: &Value) -> String {
    // An instance registered without an address is on the node's.
    let address = match entry["Service"]["Address"].as_str() {
        Some("") | None => entry["Node"]["Address"].as_str().unwrap_or_default(),
        Some(address) => address,
    };
    let port = &entry["Service"]["Port"];
    if address.contains(':') {
        format!("http://[{address}]:{port}") // IPv6
    } else {
        format!("http://{address}:{port}")
    }
}
