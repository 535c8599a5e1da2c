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

    /// How long the registry waits for a heartbeat before it marks this
    /// instance critical; heartbeats go out three times as often
    #[arg(long, env = "REGISTRATION_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub registration_ttl: Duration,

    /// The registry's ACL token, sent as X-Consul-Token with every
    /// registration, heartbeat and deregistration (needed when the
    /// registry has one)
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
}

/// The longest pause between tries to register while the registry cannot
/// be reached: once it is back, so should the service be, within a second.
const RETRY_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// This instance's entry in the registry, under an ID unique to it
/// (`service2-127.0.0.1-3003`), with a TTL check: the instance must say
/// "I am alive" (a heartbeat) within the TTL, or the registry marks it
/// critical and stops handing it out. A process that is killed, and so
/// cannot deregister, drops out that way.
#[derive(Clone)]
pub struct Registration {
    registry: Upstream,
    id: String,
    entry: Value,
    ttl: Duration,
    token: Option<String>,
}

/// A registration kept alive by its heartbeat task.
pub struct Registered {
    registration: Registration,
    heartbeat: JoinHandle<()>,
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
        let entry = json!({
            "Name": service,
            "ID": id,
            "Address": ip,
            "Port": address.port(),
            "Check": {
                "CheckID": format!("service:{id}"),
                "TTL": humantime::format_duration(options.registration_ttl).to_string(),
                // An instance critical this long is surely gone: forget it.
                "DeregisterCriticalServiceAfter": "1m",
            },
        });
        let registry = Upstream {
            name: "registry",
            url: options.registry_url,
            timeout: Duration::from_secs(2),
        };
        let ttl = options.registration_ttl;
        Registration { registry, id, entry, ttl, token: options.registry_token }
    }

    /// Registers in the background and keeps the entry alive.
    pub fn start(self) -> Registered {
        let heartbeat = actix_web::rt::spawn(self.clone().keep_alive());
        Registered { registration: self, heartbeat }
    }

    /// Registers, retrying with a growing pause while the registry cannot
    /// be reached, then sends a heartbeat every third of the TTL. If the
    /// registry has forgotten this instance (it restarted), registers again.
    async fn keep_alive(self) {
        let client = http_client();
        let heartbeat_path = format!("/v1/agent/check/pass/service:{}", self.id);
        let mut registered = false;
        let mut retry_in = Duration::from_millis(500);
        loop {
            if !registered {
                match self.put(&client, "/v1/agent/service/register", Some(&self.entry)).await {
                    Ok(()) => {
                        info!(
                            "registered with the registry at {} as {}",
                            self.registry.url, self.id
                        );
                        registered = true;
                        retry_in = Duration::from_millis(500);
                        continue; // Pass the check at once: it starts critical.
                    }
                    Err(error) => {
                        let why = self.registry.explain(&error);
                        let pause = humantime::format_duration(retry_in);
                        warn!("cannot register: {why}; retrying in {pause}");
                        actix_web::rt::time::sleep(retry_in).await;
                        retry_in = (retry_in * 2).min(RETRY_AT_MOST_EVERY);
                        continue;
                    }
                }
            }
            match self.put(&client, &heartbeat_path, None).await {
                Ok(()) => actix_web::rt::time::sleep(self.ttl / 3).await,
                Err(CallError::Status(StatusCode::NOT_FOUND, _)) => {
                    warn!("the registry has forgotten {}; registering again", self.id);
                    registered = false;
                }
                Err(error) => {
                    warn!("heartbeat failed: {}", self.registry.explain(&error));
                    actix_web::rt::time::sleep(self.ttl / 3).await;
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
    /// Stops the heartbeat and removes the entry, so that clients stop
    /// being sent here before the service stops answering.
    pub async fn leave(self) {
        self.heartbeat.abort();
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
        let registry =
            Upstream { name: "registry", url: registry_url, timeout: Duration::from_secs(2) };
        Discovery { registry, call_timeout, known: Mutex::new(HashMap::new()) }
    }

    /// The next passing instance of `service` to call, or the problem that
    /// there is none: 503 when none is registered and passing, 502 or 504
    /// when the registry cannot be asked (and nothing is remembered).
    pub async fn find(
        &self,
        client: &awc::Client,
        service: &'static str,
    ) -> Result<Upstream, Problem> {
        if let Some(url) = self.next_known(service, REMEMBER_INSTANCES_FOR) {
            return Ok(Upstream { name: service, url, timeout: self.call_timeout });
        }
        match self.ask_registry(client, service).await {
            Ok(urls) => {
                let mut known = self.known.lock().expect("discovery cache");
                // The turn goes on from where it was: starting again at the
                // first instance on every refresh would send a caller that
                // calls less than once a second to the same instance forever.
                let next = known.get(service).map_or(0, |before| before.next);
                let instances = Instances { asked_at: Instant::now(), urls, next };
                known.insert(service.to_string(), instances);
            }
            // Better an instance the registry knew a moment ago than none.
            Err(problem) => match self.next_known_after_failure(service) {
                Some(url) => {
                    warn!("{}; calling an instance of {service} known before", problem.detail);
                    return Ok(Upstream { name: service, url, timeout: self.call_timeout });
                }
                None => return Err(problem),
            },
        }
        match self.next_known(service, Duration::MAX) {
            Some(url) => Ok(Upstream { name: service, url, timeout: self.call_timeout }),
            None => {
                let detail = format!(
                    "no instance of {service} is registered and passing at {}",
                    self.registry.url
                );
                Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")))
            }
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
        let entries =
            self.registry.get_json(client, &format!("/v1/health/service/{name}?passing")).await?;
        let entries = entries.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(entries
            .iter()
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
