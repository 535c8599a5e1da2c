//! Service discovery, the client side: how a caller finds the instances of
//! a service to call (`Discovery`). How a service gets into the registry
//! is `registration.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde_json::Value;
use tracing::warn;

use crate::Upstream;
use crate::platform::{self, Problem};

/// Client-side discovery: asks the registry for the passing instances of a
/// service, spreads calls over them in turn (round-robin), and remembers
/// each answer for a second, so that not every call costs a trip to the
/// registry. (A second is shorter than any TTL, so what it remembers is
/// never much older than what the registry knows. Consul's blocking
/// queries (left out of this registry) would push changes instead; a
/// short memory is simpler and works for any service name.)
pub struct Discovery {
    registry: Upstream,
    call_timeout: Duration,
    known: Mutex<HashMap<String, Instances>>,
}

struct Instances {
    asked_at: Instant,
    urls: Vec<String>,
    next: usize,
}

const REMEMBER_INSTANCES_FOR: Duration = Duration::from_secs(1);

impl Discovery {
    /// Discovery through the registry at `registry_url`; the instances it
    /// finds are called with `call_timeout`.
    pub fn new(registry_url: String, call_timeout: Duration) -> Self {
        let registry = Upstream::new("registry", registry_url, Duration::from_secs(2));
        Discovery { registry, call_timeout, known: Mutex::default() }
    }

    /// The next passing instance of `service` to call, or the problem that
    /// there is none: 503 when none is registered and passing, 502 or 504
    /// when the registry cannot be asked (and nothing is remembered).
    pub async fn find(&self, client: &awc::Client, service: &str) -> Result<Upstream, Problem> {
        let instances = self.in_turn(client, service).await?;
        let first = instances.into_iter().next();
        first.ok_or_else(|| self.none_to_call(service))
    }

    /// The instances of `service`, starting with the one whose turn it is:
    /// from what the registry said less than a second ago, or asked again.
    async fn in_turn(&self, client: &awc::Client, service: &str) -> Result<Vec<Upstream>, Problem> {
        let fresh = self.fresh(service);
        if !fresh {
            match self.ask_registry(client, service).await {
                Ok(listed) => self.remember(service, listed),
                // Better an instance the registry knew a moment ago than none.
                Err(problem) if self.remembered_after_failure(service) => {
                    warn!("{}; calling an instance of {service} known before", problem.detail);
                }
                Err(problem) => return Err(problem),
            }
        }
        Ok(self.take_turn(service))
    }

    /// 503, and when to try again: the registry lists no instance to call.
    fn none_to_call(&self, service: &str) -> Problem {
        let detail =
            format!("no instance of {service} is registered and passing at {}", self.registry.url);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// Whether the registry listed instances of `service` less than a
    /// second ago.
    fn fresh(&self, service: &str) -> bool {
        let known = self.known.lock().expect("discovery cache");
        let instances = known.get(service).filter(|instances| !instances.urls.is_empty());
        instances.is_some_and(|instances| instances.asked_at.elapsed() <= REMEMBER_INSTANCES_FOR)
    }

    /// Remembers the instances the registry `listed` for `service`.
    fn remember(&self, service: &str, listed: Vec<String>) {
        let mut known = self.known.lock().expect("discovery cache");
        // The turn goes on from where it was: starting again at the first
        // instance on every refresh would send a caller that calls less
        // than once a second to the same instance forever.
        let next = known.get(service).map_or(0, |before| before.next);
        let instances = Instances { asked_at: Instant::now(), urls: listed, next };
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

    async fn ask_registry(
        &self,
        client: &awc::Client,
        service: &str,
    ) -> Result<Vec<String>, Problem> {
        // Encoded: whatever a name holds, it stays one segment of the path.
        let name = platform::path_segment(service);
        let entries =
            self.registry.get_json(client, &format!("/v1/health/service/{name}?passing")).await?;
        let entries = entries.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(entries.iter().map(instance_url).collect())
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
