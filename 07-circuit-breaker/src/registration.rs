//! Registration, where service discovery starts: how a service puts itself
//! in the registry when it starts, keeps its entry there while it runs,
//! and takes it out when it stops (`Registration`). How callers then find
//! it is `discovery.rs`.

use std::net::SocketAddr;
use std::time::Duration;

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
        let registry = Upstream::new("registry", options.registry_url, Duration::from_secs(2));
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
