//! Registration, where service discovery starts: how a service puts itself
//! in the registry when it starts, keeps its entry there while it runs,
//! and takes it out when it stops (`Registration`). How callers then find
//! it is `discovery.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::rt::task::JoinHandle;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::platform::{http_url, path_segment};
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
        let registry = Upstream::new("registry", options.registry_url, Duration::from_secs(2));
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
        let check_id = path_segment(&format!("service:{}", self.id));
        let heartbeat_path = format!("/v1/agent/check/pass/{check_id}");
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
        let id = path_segment(&registration.id);
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
