//! Service discovery, the client side: how a service registers itself
//! with the registry and keeps its entry up to date (`Registration`), and
//! how a caller finds the instances of a service to call (`Discovery`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::rt::task::JoinHandle;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::platform::{Problem, http_url};
use crate::{Body, CallError, Upstream, http_client};

/// Where the registry answers, when none is given.
pub const REGISTRY_URL: &str = "http://127.0.0.1:8500";

/// How a service registers itself; each option can also be set in the
/// environment.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistrationOptions {
    /// Where the service registry answers
    #[arg(long, env = "REGISTRY_URL", default_value = REGISTRY_URL, value_parser = http_url)]
    pub registry_url: String,

    /// How often the registry checks this instance's /healthz
    #[arg(long, env = "CHECK_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub check_interval: Duration,

    /// The registry's ACL token, sent as X-Consul-Token when this instance
    /// registers and deregisters (needed when the registry has one)
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
}

/// How long the registry waits for an answer from /healthz: more than a
/// dependency check may take there, so that a slow dependency shows as a
/// warning in the answer, not as a missing answer.
const CHECK_TIMEOUT: &str = "2s";

/// How often a registered service registers again, and the longest pause
/// between tries while the registry cannot be reached: a restarted registry
/// has forgotten everyone and should see them again within a second, and
/// registering again is harmless to one that has not (Consul's agents do
/// the same).
const REGISTER_AGAIN_EVERY: Duration = Duration::from_secs(1);

/// This instance's entry in the registry, under an ID unique to it
/// (`service2-127.0.0.1-3003`), with an HTTP check: the registry calls the
/// instance's `/healthz` at every interval, and stops handing out an
/// instance that answers 503, answers too late, or does not answer at all
/// (a killed process, say).
#[derive(Clone)]
pub struct Registration {
    registry: Upstream,
    id: String,
    entry: Value,
    token: Option<String>,
}

/// A registration kept up to date by its task.
pub struct Registered {
    registration: Registration,
    refresh: JoinHandle<()>,
}

impl Registration {
    pub fn new(service: &'static str, address: SocketAddr, options: RegistrationOptions) -> Self {
        // Listening on every address (0.0.0.0) is not an address to call.
        let ip = if address.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            address.ip().to_string()
        };
        let id = format!("{service}-{ip}-{}", address.port());
        // An IPv6 address is written in brackets in a URL: http://[::1]:3003/.
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        let entry = json!({
            "Name": service,
            "ID": id,
            "Address": ip,
            "Port": address.port(),
            "Check": {
                "CheckID": format!("service:{id}"),
                "HTTP": format!("http://{host}:{}/healthz", address.port()),
                "Interval": humantime::format_duration(options.check_interval).to_string(),
                "Timeout": CHECK_TIMEOUT,
                // An instance critical this long is surely gone: forget it.
                "DeregisterCriticalServiceAfter": "1m",
            },
        });
        let registry = Upstream {
            name: "registry".to_string(),
            url: options.registry_url,
            timeout: Duration::from_secs(2),
            circuit: None,
        };
        Registration { registry, id, entry, token: options.registry_token }
    }

    /// Registers in the background, and keeps the entry there.
    pub fn start(self) -> Registered {
        let refresh = actix_web::rt::spawn(self.clone().keep_registered());
        Registered { registration: self, refresh }
    }

    /// Registers, retrying with a growing pause while the registry cannot
    /// be reached, then registers again every `REGISTER_AGAIN_EVERY`.
    async fn keep_registered(self) {
        let client = http_client();
        let mut registered = false;
        let mut retry_in = Duration::from_millis(500);
        loop {
            match self.put(&client, "/v1/agent/service/register", Some(&self.entry)).await {
                Ok(()) => {
                    if !registered {
                        info!(
                            "registered with the registry at {} as {}",
                            self.registry.url, self.id
                        );
                    }
                    registered = true;
                    retry_in = Duration::from_millis(500);
                    actix_web::rt::time::sleep(REGISTER_AGAIN_EVERY).await;
                }
                Err(error) => {
                    let why = self.registry.explain(&error);
                    let pause = humantime::format_duration(retry_in);
                    warn!("cannot register: {why}; retrying in {pause}");
                    registered = false;
                    actix_web::rt::time::sleep(retry_in).await;
                    retry_in = (retry_in * 2).min(REGISTER_AGAIN_EVERY);
                }
            }
        }
    }

    async fn put(
        &self,
        client: &awc::Client,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), CallError> {
        let mut request = client.put(format!("{}{path}", self.registry.url));
        if let Some(token) = &self.token {
            request = request.insert_header(("X-Consul-Token", token.as_str()));
        }
        let body = body.map_or(Body::Empty, |body| Body::Json(body.clone()));
        let mut response = self.registry.call(request, body).await?;
        if response.status().is_success() {
            return Ok(());
        }
        // The registry explains itself in plain text, as Consul does.
        let said = response.body().await.unwrap_or_default();
        let said = String::from_utf8_lossy(&said).trim().to_string();
        Err(CallError::Status(response.status(), Some(said)))
    }
}

impl Registered {
    /// Stops registering and removes the entry, so that clients stop being
    /// sent here before the service stops answering.
    pub async fn leave(self) {
        self.refresh.abort();
        let registration = self.registration;
        let id = utf8_percent_encode(&registration.id, NON_ALPHANUMERIC);
        let path = format!("/v1/agent/service/deregister/{id}");
        match registration.put(&http_client(), &path, None).await {
            Ok(()) => info!("deregistered {}", registration.id),
            // When the whole step stops, the registry may stop first.
            Err(error) => {
                let why = registration.registry.explain(&error);
                info!("not deregistered ({why}); is the registry stopping too?")
            }
        }
    }
}

/// Client-side discovery: asks the registry for the healthy instances of a
/// service (passing or warning, not critical), spreads calls over them in
/// turn (round-robin), and remembers each answer for a second, so that not
/// every call costs a trip to the registry. (A second is shorter than any
/// check interval, so what it remembers is never much older than what the
/// registry knows. Consul's blocking queries, left out of this registry,
/// would push changes instead; a short memory is simpler and works for any
/// service name.)
pub struct Discovery {
    registry: Upstream,
    call_timeout: Duration,
    known: Mutex<HashMap<String, Instances>>,
}

struct Instances {
    asked_at: Instant,
    urls: Vec<String>,
    next: usize,
    /// When the registry last listed an instance of the service.
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
        let registry = Upstream {
            name: "registry".to_string(),
            url: registry_url,
            timeout: Duration::from_secs(2),
            circuit: None,
        };
        Discovery { registry, call_timeout, known: Mutex::new(HashMap::new()) }
    }

    /// The next passing instance of `service` to call, or the problem that
    /// there is none: 503 when none is registered and passing, 502 or 504
    /// when the registry cannot be asked (and nothing is remembered).
    pub async fn find(&self, client: &awc::Client, service: &str) -> Result<Upstream, Problem> {
        let timeout = self.call_timeout;
        let instance = |url| Upstream { name: service.to_string(), url, timeout, circuit: None };
        if let Some(url) = self.next_known(service, REMEMBER_INSTANCES_FOR) {
            return Ok(instance(url));
        }
        // It listed none less than a second ago: none still. A name asked
        // for again and again costs one call a second, not one each.
        if self.asked_lately(service) {
            return Err(self.none_to_call(service));
        }
        match self.ask_registry(client, service).await {
            Ok(urls) => {
                let mut known = self.known.lock().expect("discovery cache");
                // The turn goes on from where it was: starting again at the
                // first instance on every refresh would send a caller that
                // calls less than once a second to the same instance forever.
                let before = known.get(service);
                let next = before.map_or(0, |before| before.next);
                let last_listed = match urls.is_empty() {
                    true => before.and_then(|before| before.last_listed),
                    false => Some(Instant::now()),
                };
                let instances = Instances { asked_at: Instant::now(), urls, next, last_listed };
                if !known.contains_key(service) {
                    make_room(&mut known);
                }
                known.insert(service.to_string(), instances);
            }
            // Better an instance the registry knew a moment ago than none.
            Err(problem) => match self.next_known_after_failure(service) {
                Some(url) => {
                    warn!("{}; calling an instance of {service} known before", problem.detail);
                    return Ok(instance(url));
                }
                None => return Err(problem),
            },
        }
        self.next_known(service, Duration::MAX)
            .map(instance)
            .ok_or_else(|| self.none_to_call(service))
    }

    /// 503, and when to try again: the registry lists no instance to call.
    fn none_to_call(&self, service: &str) -> Problem {
        let detail =
            format!("no healthy instance of {service} is registered at {}", self.registry.url);
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// Whether the registry was asked for `service` less than a second ago.
    fn asked_lately(&self, service: &str) -> bool {
        let known = self.known.lock().expect("discovery cache");
        let asked_at = known.get(service).map(|instances| instances.asked_at);
        asked_at.is_some_and(|at| at.elapsed() <= REMEMBER_INSTANCES_FOR)
    }

    /// Every healthy instance of `service`, starting with the one whose
    /// turn it is, each once: for a caller that may pass some over (their
    /// circuits are open), whatever other calls take meanwhile.
    pub async fn find_all(
        &self,
        client: &awc::Client,
        service: &str,
    ) -> Result<Vec<Upstream>, Problem> {
        let first = self.find(client, service).await?;
        let known = self.known.lock().expect("discovery cache");
        let urls = known.get(service).map(|instances| instances.urls.clone()).unwrap_or_default();
        let Some(start) = urls.iter().position(|url| *url == first.url) else {
            return Ok(vec![first]);
        };
        let in_turn = urls.iter().cycle().skip(start).take(urls.len());
        Ok(in_turn.map(|url| Upstream { url: url.clone(), ..first.clone() }).collect())
    }

    /// Whether the registry listed instances of `service` in the last ten
    /// minutes: if none is listed now, it is down (or the registry has just
    /// restarted and not heard from it yet), not a name that never existed.
    pub fn listed_lately(&self, service: &str) -> bool {
        let known = self.known.lock().expect("discovery cache");
        let last_listed = known.get(service).and_then(|instances| instances.last_listed);
        last_listed.is_some_and(|at| at.elapsed() < REMEMBER_SERVICES_FOR)
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

    /// After a failed lookup, the next remembered instance; and the lookup
    /// counts as made, so that for a second calls take what is remembered
    /// instead of each asking (and warning about) a registry that is down.
    fn next_known_after_failure(&self, service: &str) -> Option<String> {
        if let Some(instances) = self.known.lock().expect("discovery cache").get_mut(service) {
            instances.asked_at = Instant::now();
        }
        self.next_known(service, Duration::MAX)
    }

    /// The next of the remembered instances, in turn, if the registry was
    /// asked for them within `max_age` (`Duration::MAX`: however long ago).
    fn next_known(&self, service: &str, max_age: Duration) -> Option<String> {
        let mut known = self.known.lock().expect("discovery cache");
        let instances = known.get_mut(service)?;
        if instances.urls.is_empty() || instances.asked_at.elapsed() > max_age {
            return None;
        }
        instances.next = (instances.next + 1) % instances.urls.len();
        Some(instances.urls[instances.next].clone())
    }

    async fn ask_registry(
        &self,
        client: &awc::Client,
        service: &str,
    ) -> Result<Vec<String>, Problem> {
        // Encoded: whatever a name holds, it stays one segment of the path.
        let name = utf8_percent_encode(service, NON_ALPHANUMERIC);
        let entries = self.registry.get_json(client, &format!("/v1/health/service/{name}")).await?;
        let entries = entries.as_array().map(Vec::as_slice).unwrap_or_default();
        // Not `?passing`: it drops instances in warning too, and a service
        // warns when one of *its* dependencies is down. Taking it out of
        // rotation for that would spread one failure to all its callers.
        let healthy = |entry: &&Value| {
            let checks = entry["Checks"].as_array().map(Vec::as_slice).unwrap_or_default();
            checks.iter().all(|check| check["Status"] != "critical")
        };
        Ok(entries
            .iter()
            .filter(healthy)
            .map(|entry| {
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
            })
            .collect())
    }
}
