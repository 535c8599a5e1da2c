//! registry: the phone book of the system. Services register themselves
//! (name, address, port) with a health check, keep that check passing while
//! they live, and deregister when they stop; clients ask the registry for
//! the passing instances of a service instead of knowing addresses.
//!
//! It speaks the part of Consul's HTTP API that this step's services use,
//! so a real Consul agent can stand in for it, and Consul's clients can
//! register and look up with it. Like Consul, it answers errors in plain
//! text, not problem+json: Consul's clients expect that. Its state is in
//! memory: a restarted registry starts empty, and services register again
//! within a second. What a real registry has and this one leaves out is
//! listed in step 04's README.
//!
//! It checks the health of what is registered: a TTL check turns critical
//! when the instance stops reporting, and for an HTTP check the registry
//! calls the instance's health endpoint at every interval itself.
//!
//! For Prometheus it serves every instance, and itself, as HTTP service
//! discovery targets (`/prometheus/targets`).

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Bytes};
use actix_web::{Error, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};
use metrics::counter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::info;

use crate::HealthOverride;

pub const NAME: &str = "registry";

/// The registry's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on (8500 is Consul's: a real Consul agent can stand in)
    #[arg(long, env = "REGISTRY_PORT", default_value_t = 8500)]
    pub port: u16,

    /// The token every write (register, deregister, check report) must carry
    /// as "X-Consul-Token: <token>". Needed when listening on an address
    /// other machines can reach; on 127.0.0.1 writes need no token
    #[arg(long, env = "REGISTRY_ACL_TOKEN", hide_env_values = true)]
    pub acl_token: Option<String>,
}

/// How often the registry looks for TTLs that ran out, for instances
/// critical for too long, and for HTTP checks due to run.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The most HTTP checks one sweep starts: 100 a second in all. The
/// workshop's instances need a few a second; however many checks are
/// registered, the registry calls no more than this, those that have
/// waited longest first, and each then runs less often than it asked.
const CHECKS_PER_SWEEP: usize = 25;

/// The registry is one Consul "node" in one datacenter.
const NODE: &str = "workshop";
const DATACENTER: &str = "dc1";

/// The registry without an ACL token: on a loopback address only.
pub fn server(listener: TcpListener) -> io::Result<Server> {
    server_with_acl_token(listener, None)
}

/// The registry; with `acl_token`, only clients that send it can write.
pub fn server_with_acl_token(
    listener: TcpListener,
    acl_token: Option<String>,
) -> io::Result<Server> {
    let acl_token = choose_acl_token(&listener, acl_token)?;
    // Prometheus scrapes the registry too: it lists itself among the targets.
    let mut itself = listener.local_addr()?;
    if itself.ip().is_unspecified() {
        itself.set_ip([127, 0, 0, 1].into());
    }
    let itself = web::Data::new(Itself(itself));
    let registry = web::Data::new(Registry::new(acl_token));
    actix_web::rt::spawn(sweep(registry.clone().into_inner()));
    crate::serve(listener, move |routes| {
        routes
            .app_data(registry.clone())
            .app_data(itself.clone())
            .service(get("/", dashboard))
            .service(get("/healthz", healthz))
            .service(get("/v1/status/leader", leader))
            .service(put("/v1/agent/service/register", register))
            .service(put("/v1/agent/service/deregister/{id}", deregister))
            .service(put("/v1/agent/check/{status}/{check_id}", set_check))
            .service(get("/v1/health/service/{name}", health))
            .service(get("/v1/catalog/services", catalog_services))
            .service(get("/prometheus/targets", prometheus_targets))
            .default_service(web::to(|request: HttpRequest| async move {
                plain(StatusCode::NOT_FOUND, format!("no such endpoint: {}", request.path()))
            }));
    })
}

/// On a loopback address only this machine can write, as the workshop's
/// commands expect; anywhere else anyone could register a fake instance of
/// a service and be sent its traffic.
pub fn choose_acl_token(
    listener: &TcpListener,
    configured: Option<String>,
) -> io::Result<Option<String>> {
    let address = listener.local_addr()?;
    match configured {
        Some(token) if token.is_empty() => Err(io::Error::other(
            "its ACL token is empty: set REGISTRY_ACL_TOKEN to a secret of your own, or leave \
             it unset on 127.0.0.1",
        )),
        Some(token) => Ok(Some(token)),
        None if address.ip().is_loopback() => Ok(None),
        None => Err(io::Error::other(format!(
            "it listens on {address}, which other machines can reach, and has no ACL token: \
             anyone could register a fake instance and be sent its traffic. Set a secret token \
             with REGISTRY_ACL_TOKEN=<TOKEN> (or `registry --acl-token <TOKEN>` when it runs \
             alone), and give the services the same with REGISTRY_TOKEN=<TOKEN>."
        ))),
    }
}

// ---------------------------------------------------------------------------
// The state: instances and their checks, and an index that counts changes.
// ---------------------------------------------------------------------------

pub struct Registry {
    state: Mutex<State>,
    /// What a write must carry as X-Consul-Token, if anything.
    acl_token: Option<String>,
}

struct State {
    /// Consul's `X-Consul-Index`: a number that grows with every change a
    /// reader could see, so that a client can tell whether anything changed.
    index: u64,
    instances: BTreeMap<String, Instance>,
}

/// The registry's own address, for Prometheus.
struct Itself(SocketAddr);

#[derive(Clone)]
struct Instance {
    id: String,
    name: String,
    address: String,
    port: u16,
    checks: Vec<Check>,
}

#[derive(Clone)]
struct Check {
    id: String,
    name: String,
    status: Status,
    output: String,
    probe: Probe,
    /// When the check last learned the instance's status.
    last_checked: Option<SystemTime>,
    /// Remove the instance once this check has been critical this long.
    deregister_after: Option<Duration>,
    critical_since: Option<Instant>,
}

/// How a check learns the instance's health.
#[derive(Clone)]
enum Probe {
    /// The instance reports (a heartbeat) within `ttl`, or turns critical.
    Ttl { ttl: Duration, deadline: Instant },
    /// The registry calls `url` every `interval` and waits `timeout` for the
    /// answer: the instance need not do anything but answer.
    Http { url: String, interval: Duration, timeout: Duration, next_run: Instant, running: bool },
}

impl Probe {
    /// Whether this is the HTTP probe that `definition` asks for.
    fn is_defined_by(&self, definition: &ProbeDefinition) -> bool {
        match (self, definition) {
            (
                Probe::Http { url, interval, timeout, .. },
                ProbeDefinition::Http { url: wanted, interval: every, timeout: within },
            ) => (url, interval, timeout) == (wanted, every, within),
            _ => false,
        }
    }

    fn new(definition: &ProbeDefinition, now: Instant) -> Probe {
        match definition.clone() {
            ProbeDefinition::Ttl(ttl) => Probe::Ttl { ttl, deadline: later(now, ttl) },
            ProbeDefinition::Http { url, interval, timeout } => {
                Probe::Http { url, interval, timeout, next_run: now, running: false }
            }
        }
    }

    /// When an HTTP check is due, unless it is running.
    fn due_at(&self) -> Option<Instant> {
        match self {
            Probe::Http { next_run, running: false, .. } => Some(*next_run),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Probe::Ttl { .. } => "ttl",
            Probe::Http { .. } => "http",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

impl Registry {
    fn new(acl_token: Option<String>) -> Registry {
        // Seeded from the clock, so that a restarted registry never hands
        // out an index a client saw before the restart.
        let index =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |t| t.as_millis() as u64);
        let instances = BTreeMap::new();
        let state = State { index, instances };
        Registry { state: Mutex::new(state), acl_token }
    }

    /// The state, even after a panic while it was locked: one bad request
    /// must not make every later one fail. `/healthz` then fails, because
    /// that panic may have left the state half-changed.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read<R>(&self, look: impl FnOnce(&State) -> R) -> R {
        look(&self.lock())
    }

    /// How many instances of each service registered are in each status, as
    /// Prometheus's `registry_instances` counts them: written at each scrape
    /// (`monitoring.rs`), so that a service gone leaves no series behind.
    pub fn instance_counts(&self) -> BTreeMap<(String, &'static str), u32> {
        self.read(State::instance_counts)
    }

    fn write<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        change(&mut self.lock())
    }
}

impl State {
    /// How many instances of each service registered are in each status
    /// (all three, 0 included).
    fn instance_counts(&self) -> BTreeMap<(String, &'static str), u32> {
        let mut counts = BTreeMap::new();
        for instance in self.instances.values() {
            for status in [Status::Passing, Status::Warning, Status::Critical] {
                let count = counts.entry((instance.name.clone(), status.as_str())).or_default();
                *count += u32::from(instance.status() == status);
            }
        }
        counts
    }

    fn bump(&mut self) {
        self.index += 1;
    }

    /// Adds the instance, or replaces it if its ID is known; a new one only
    /// while there is room.
    fn register(&mut self, registration: Registration) -> Result<(), RegistryFull> {
        if self.instances.len() >= MOST_INSTANCES && !self.instances.contains_key(&registration.id)
        {
            return Err(RegistryFull);
        }
        self.bump();
        let now = Instant::now();
        let previous = self.instances.remove(&registration.id);
        // Checks already known keep their status: an instance that
        // registers again must not turn critical because of it.
        let checks = registration
            .checks
            .into_iter()
            .map(|definition| {
                let known = previous.iter().flat_map(|p| &p.checks).find(|c| c.id == definition.id);
                let status = known.map_or(definition.status, |check| check.status);
                Check {
                    critical_since: known
                        .map_or((status == Status::Critical).then_some(now), |check| {
                            check.critical_since
                        }),
                    output: known.map(|check| check.output.clone()).unwrap_or_default(),
                    last_checked: known.and_then(|check| check.last_checked),
                    probe: match known {
                        // Services register again every second: an unchanged
                        // HTTP check keeps its schedule, or it would run then too.
                        Some(check) if check.probe.is_defined_by(&definition.probe) => {
                            check.probe.clone()
                        }
                        _ => Probe::new(&definition.probe, now),
                    },
                    id: definition.id,
                    name: definition.name,
                    status,
                    deregister_after: definition.deregister_after,
                }
            })
            .collect();
        if previous.is_none() {
            info!("{} registered as {}", registration.id, registration.name);
        }
        self.instances.insert(
            registration.id.clone(),
            Instance {
                id: registration.id,
                name: registration.name,
                address: registration.address,
                port: registration.port,
                checks,
            },
        );
        Ok(())
    }

    fn check_mut(&mut self, check_id: &str) -> Option<&mut Check> {
        self.instances
            .values_mut()
            .find_map(|instance| instance.checks.iter_mut().find(|check| check.id == check_id))
    }

    /// A status report for a check (a heartbeat, for a TTL check): it also
    /// restarts the TTL.
    fn report(&mut self, check_id: &str, status: Status, output: String) -> Reported {
        let Some(check) = self.check_mut(check_id) else { return Reported::UnknownCheck };
        let Probe::Ttl { ttl, deadline } = &mut check.probe else { return Reported::NotTtl };
        *deadline = later(Instant::now(), *ttl);
        check.last_checked = Some(SystemTime::now());
        self.set_status(check_id, status, output);
        Reported::Done
    }

    /// The result of an HTTP check that the registry ran.
    fn checked(&mut self, check_id: &str, status: Status, output: String) {
        let Some(check) = self.check_mut(check_id) else { return }; // deregistered meanwhile
        if let Probe::Http { running, .. } = &mut check.probe {
            *running = false;
        }
        check.last_checked = Some(SystemTime::now());
        self.set_status(check_id, status, output);
    }

    /// Changes a check's status and output; a change a reader can see, so
    /// it bumps the index.
    fn set_status(&mut self, check_id: &str, status: Status, output: String) {
        let Some(check) = self.check_mut(check_id) else { return };
        if check.status == status && check.output == output {
            return;
        }
        if check.status != status {
            info!("check {check_id} is now {}", status.as_str());
        }
        check.critical_since = match status {
            Status::Critical => check.critical_since.or(Some(Instant::now())),
            _ => None,
        };
        check.status = status;
        check.output = output;
        self.bump();
    }
    /// Turns checks whose TTL ran out critical, removes instances that
    /// have been critical for longer than they asked to be kept, and
    /// returns the HTTP checks due to run.
    fn sweep(&mut self, now: Instant) -> Vec<DueCheck> {
        let mut expired = Vec::new();
        let mut dead = Vec::new();
        let mut waiting = Vec::new();
        for instance in self.instances.values_mut() {
            for check in &mut instance.checks {
                if let Probe::Ttl { deadline, .. } = check.probe
                    && check.status != Status::Critical
                    && now >= deadline
                {
                    expired.push(check.id.clone());
                }
                let critical_for = check.critical_since.map(|since| now.duration_since(since));
                if let (Some(critical_for), Some(limit)) = (critical_for, check.deregister_after)
                    && critical_for > limit
                {
                    dead.push((instance.id.clone(), limit));
                }
                if check.probe.due_at().is_some_and(|due_at| now >= due_at) {
                    waiting.push((&instance.name, check));
                }
            }
        }
        // Those that have waited longest first, and no more than a sweep's share.
        waiting.sort_by_key(|(_, check)| check.probe.due_at());
        waiting.truncate(CHECKS_PER_SWEEP);
        let mut due = Vec::new();
        for (service, check) in waiting {
            let Probe::Http { url, interval, timeout, next_run, running } = &mut check.probe else {
                continue;
            };
            *running = true;
            *next_run = later(now, *interval);
            due.push(DueCheck {
                service: service.clone(),
                check_id: check.id.clone(),
                url: url.clone(),
                timeout: *timeout,
            });
        }
        for check_id in expired {
            let last_output = self.check_mut(&check_id).map(|check| check.output.clone());
            let output = match last_output.as_deref() {
                Some("") | None => "TTL expired".to_string(),
                Some(last) => format!("TTL expired (last output: {last})"),
            };
            self.set_status(&check_id, Status::Critical, output);
        }
        for (id, limit) in dead {
            if self.instances.remove(&id).is_some() {
                info!(
                    "{id} deregistered: critical for longer than {}",
                    humantime::format_duration(limit)
                );
                self.bump();
            }
        }
        due
    }
}

/// `now + after`. The bounds on what a client may ask for keep it far from
/// overflowing; were one missed, a day from now is as good as never.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or_else(|| now + LONGEST_CHECK_DURATION)
}

impl Instance {
    fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|check| check.status)
            .max_by_key(|status| *status as u8)
            .unwrap_or(Status::Passing)
    }
}

async fn sweep(registry: Arc<Registry>) {
    // Each check has its own timeout. A redirect is not followed: it would
    // let an instance send its check anywhere, past `calls_the_instance`.
    let client = awc::Client::builder().disable_timeout().disable_redirects().finish();
    let mut ticks = actix_web::rt::time::interval(SWEEP_EVERY);
    loop {
        ticks.tick().await;
        // A panic here would end the sweeps for good, and every TTL with
        // them: skip this sweep instead (and `/healthz` fails, see `lock`).
        let swept = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|state| state.sweep(Instant::now()))
        }));
        for due in swept.unwrap_or_default() {
            actix_web::rt::spawn(run_http_check(registry.clone(), client.clone(), due));
        }
    }
}

/// An HTTP check due to run.
struct DueCheck {
    service: String,
    check_id: String,
    url: String,
    timeout: Duration,
}

/// Calls an instance's health endpoint as Consul does: 2xx is passing, 429
/// warning, anything else critical, and so are no answer and one too late.
/// The output says what came back, so that the dashboard can show why.
async fn run_http_check(registry: Arc<Registry>, client: awc::Client, due: DueCheck) {
    let call = async {
        let request = client
            .get(&due.url)
            .insert_header(("Accept", "text/plain, text/*, */*"))
            .insert_header(("User-Agent", "Consul Health Check"));
        let mut response = request.send().await.map_err(|error| error.to_string())?;
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response.body().limit(64 * 1024).await.unwrap_or_default();
        Ok::<_, String>((response.status(), shown_body(content_type, &body)))
    };
    let (status, output) = match actix_web::rt::time::timeout(due.timeout, call).await {
        Ok(Ok((code, body))) => {
            let status = match code {
                code if code.is_success() => Status::Passing,
                StatusCode::TOO_MANY_REQUESTS => Status::Warning,
                _ => Status::Critical,
            };
            (status, format!("HTTP GET {}: {code} Output: {body}", due.url))
        }
        Ok(Err(error)) => (Status::Critical, format!("HTTP GET {}: {error}", due.url)),
        Err(_) => {
            let timeout = humantime::format_duration(due.timeout);
            (Status::Critical, format!("HTTP GET {}: no answer within {timeout}", due.url))
        }
    };
    counter!("registry_checks_total", "service_name" => due.service, "status" => status.as_str())
        .increment(1);
    registry.write(|state| state.checked(&due.check_id, status, output));
}

/// What a check's output shows of the answer: a health document whole (up
/// to 4 KB), or the first line of plain text or of a body of no type ("OK").
/// Any other body is no health answer, and is not shown: it may be a page
/// that the instance serves its own clients, not the open dashboard.
fn shown_body(content_type: Option<HeaderValue>, body: &[u8]) -> String {
    const FIRST_LINE: usize = 200;
    let body = String::from_utf8_lossy(body);
    let content_type = content_type.as_ref().and_then(|value| value.to_str().ok()).unwrap_or("");
    match content_type.split(';').next().unwrap_or("").trim().to_lowercase().as_str() {
        "application/health+json" => cut(&body, LONGEST_OUTPUT).to_string(),
        "text/plain" | "" => cut(body.lines().next().unwrap_or(""), FIRST_LINE).to_string(),
        _ => "(not shown: not a health answer)".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Writes: register, deregister, check reports. PUT only, as in Consul.
// ---------------------------------------------------------------------------

/// A registration as Consul takes it, keys matched whatever their case.
struct Registration {
    id: String,
    name: String,
    address: String,
    port: u16,
    checks: Vec<CheckDefinition>,
}

struct CheckDefinition {
    id: String,
    name: String,
    status: Status,
    probe: ProbeDefinition,
    deregister_after: Option<Duration>,
}

#[derive(Clone)]
enum ProbeDefinition {
    Ttl(Duration),
    Http { url: String, interval: Duration, timeout: Duration },
}

/// How long an HTTP check waits for an answer when the registration does
/// not say (Consul's default).
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest TTL, interval, timeout or time before deregistration a check
/// may ask for: longer than any real use, and far from the overflow that a
/// huge one would cause in the registry's clock arithmetic.
const LONGEST_CHECK_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest interval between two runs of an HTTP check: any shorter,
/// and the registry would call the instance in a loop.
const SHORTEST_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The longest service name or ID (and check ID): they are keys, shown on
/// the dashboard and in URLs, not documents.
const LONGEST_NAME: usize = 256;

/// The most of a check's output the registry keeps, in bytes, as Consul
/// does (`check_output_max_size`): it is for the dashboard, not a store.
const LONGEST_OUTPUT: usize = 4096;

/// The most checks one instance may have. Consul sets no number; a service
/// has a check or two (the workshop's have one), and every check is work
/// for the registry at every interval.
const MOST_CHECKS_PER_INSTANCE: usize = 8;

/// The most instances the registry keeps. It stands in for one Consul
/// agent, which holds the services of one machine: a step runs up to seven,
/// and a learner starts a few more. 256 is far above that, and keeps the
/// worst case (every instance with 8 checks of 4 KB output) near 10 MB.
const MOST_INSTANCES: usize = 256;

/// The body of a registration, its keys folded (see `fold_keys`).
#[derive(Deserialize)]
struct RegistrationBody {
    name: Option<String>,
    id: Option<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    check: Option<CheckBody>,
    #[serde(default)]
    checks: Vec<CheckBody>,
}

#[derive(Deserialize)]
struct CheckBody {
    checkid: Option<String>,
    name: Option<String>,
    status: Option<String>,
    ttl: Option<Value>,
    interval: Option<Value>,
    http: Option<String>,
    timeout: Option<Value>,
    deregistercriticalserviceafter: Option<Value>,
}

/// The registry has `MOST_INSTANCES` already.
struct RegistryFull;

async fn register(registry: web::Data<Registry>, body: Bytes) -> HttpResponse {
    let registration = match parse_registration(&body) {
        Ok(registration) => registration,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    match registry.write(|state| state.register(registration)) {
        Ok(()) => HttpResponse::Ok().finish(),
        // 507 Insufficient Storage: nothing is wrong with the registration,
        // and it may succeed once other instances are gone.
        Err(RegistryFull) => plain(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "Registry full: it keeps at most {MOST_INSTANCES} instances; deregister one first"
            ),
        ),
    }
}

fn parse_registration(body: &[u8]) -> Result<Registration, String> {
    let decode_failed = |error: serde_json::Error| format!("Request decode failed: {error}");
    let body: Value = serde_json::from_slice(body).map_err(decode_failed)?;
    let body: RegistrationBody = serde_json::from_value(fold_keys(body)).map_err(decode_failed)?;

    let name = body.name.filter(|name| !name.is_empty()).ok_or("Missing service name")?;
    valid_name("service name", &name)?;
    if !is_service_name(&name) {
        return Err(format!(
            "Invalid service name {name:?}: it would not be discoverable via DNS. A service \
             name is 1 to 63 letters, digits and dashes, starting and ending with a letter or digit"
        ));
    }
    if body.address == "0.0.0.0" || body.address == "::" || body.address == "[::]" {
        return Err("Invalid service address".to_string());
    }
    valid_name("service address", &body.address)?;
    let id = body.id.filter(|id| !id.is_empty()).unwrap_or_else(|| name.clone());
    valid_name("service ID", &id)?;
    let definitions: Vec<CheckBody> = body.check.into_iter().chain(body.checks).collect();
    if definitions.len() > MOST_CHECKS_PER_INSTANCE {
        return Err(format!(
            "Invalid registration: {} checks; an instance may have at most {MOST_CHECKS_PER_INSTANCE}",
            definitions.len()
        ));
    }
    let several = definitions.len() > 1;
    let mut checks = Vec::new();
    for (number, definition) in (1..).zip(definitions) {
        let probe = match (&definition.ttl, definition.http, &definition.interval) {
            (Some(_), _, Some(_)) => {
                return Err("Invalid check: Interval and TTL cannot both be specified".to_string());
            }
            (Some(_), None, None) => ProbeDefinition::Ttl(
                check_duration("TTL", &definition.ttl, Duration::ZERO)?
                    .ok_or("Invalid check: TTL must be > 0 for TTL checks")?,
            ),
            (None, Some(url), _) => ProbeDefinition::Http {
                url: calls_the_instance(url, &body.address, body.port)?,
                interval: check_duration(
                    "Interval",
                    &definition.interval,
                    SHORTEST_CHECK_INTERVAL,
                )?
                .ok_or("Invalid check: Interval must be > 0 for HTTP checks")?,
                timeout: check_duration("Timeout", &definition.timeout, Duration::ZERO)?
                    .unwrap_or(DEFAULT_CHECK_TIMEOUT),
            },
            _ => {
                return Err(
                    "Invalid check: give it a TTL, or an HTTP URL and an Interval".to_string()
                );
            }
        };
        let status = match definition.status.as_deref() {
            None | Some("") => Status::Critical,
            Some(text) => serde_json::from_value(Value::String(text.to_string()))
                .map_err(|_| format!("Invalid check status: '{text}'"))?,
        };
        let default_id =
            if several { format!("service:{id}:{number}") } else { format!("service:{id}") };
        let check_id = definition.checkid.filter(|id| !id.is_empty()).unwrap_or(default_id);
        valid_name("check ID", &check_id)?;
        let check_name = definition.name.unwrap_or_else(|| format!("Service '{name}' check"));
        valid_name("check name", &check_name)?;
        checks.push(CheckDefinition {
            id: check_id,
            name: check_name,
            status,
            probe,
            deregister_after: check_duration(
                "DeregisterCriticalServiceAfter",
                &definition.deregistercriticalserviceafter,
                Duration::ZERO,
            )?,
        });
    }
    Ok(Registration { id, name, address: body.address, port: body.port, checks })
}

/// Consul's clients write keys in any case ("Name", "name") and sometimes
/// in snake_case ("deregister_critical_service_after"): fold the keys of a
/// registration and of its checks to one form, lowercase without
/// underscores.
fn fold_keys(value: Value) -> Value {
    let Value::Object(fields) = value else { return value };
    let folded = fields.into_iter().map(|(key, value)| {
        let key = key.to_lowercase().replace('_', "");
        let value = match (key.as_str(), value) {
            ("check", check) => fold_keys(check),
            ("checks", Value::Array(checks)) => {
                Value::Array(checks.into_iter().map(fold_keys).collect())
            }
            (_, value) => value,
        };
        (key, value)
    });
    Value::Object(folded.collect())
}

/// Whether `name` can be a service's name: a DNS label (1 to 63 ASCII
/// letters, digits and dashes, starting and ending with a letter or digit),
/// which is what Consul can serve over DNS. A service name goes into URLs,
/// routes and metric labels: this keeps it one plain word, with nothing to
/// encode or escape.
pub fn is_service_name(name: &str) -> bool {
    let label = name.as_bytes();
    let letter_or_digit = |byte: &u8| byte.is_ascii_alphanumeric();
    label.len() <= 63
        && label.first().is_some_and(letter_or_digit)
        && label.last().is_some_and(letter_or_digit)
        && label.iter().all(|byte| letter_or_digit(byte) || *byte == b'-')
}

/// An HTTP check calls the instance it checks, at its Address and Port (no
/// Address: this machine). Consul lets it call any URL; here, a registration
/// cannot make the registry call something else again and again (another
/// service's /metrics or /events, another machine) and show what came back.
fn calls_the_instance(url: String, address: &str, port: u16) -> Result<String, String> {
    valid_name("HTTP check URL", &url)?;
    let address = if address.is_empty() { "127.0.0.1" } else { address };
    let host = |text: &str| text.trim_start_matches('[').trim_end_matches(']').to_lowercase();
    let called = url.parse::<Uri>().ok().filter(|uri| uri.scheme_str() == Some("http"));
    match called.as_ref().and_then(Uri::authority) {
        Some(called)
            if host(called.host()) == host(address) && called.port_u16().unwrap_or(80) == port =>
        {
            Ok(url)
        }
        _ => Err(format!(
            "Invalid check: HTTP {url:?} must call the instance itself, at its Address and Port: \
             http://{}:{port}/…",
            if address.contains(':') { format!("[{address}]") } else { address.to_string() }
        )),
    }
}

/// The start of `text`, at most `longest` bytes, cut between characters.
fn cut(text: &str, longest: usize) -> &str {
    let mut end = text.len().min(longest);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A name or ID that will be a key, a line on the dashboard and part of a
/// URL: control characters and a megabyte of text have no place there.
fn valid_name(what: &str, text: &str) -> Result<(), String> {
    if text.len() > LONGEST_NAME {
        return Err(format!("Invalid {what}: longer than {LONGEST_NAME} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("Invalid {what} {text:?}: it contains control characters"));
    }
    Ok(())
}

/// The duration `field` of a check, if given and not zero, from `shortest`
/// to `LONGEST_CHECK_DURATION`.
fn check_duration(
    field: &str,
    value: &Option<Value>,
    shortest: Duration,
) -> Result<Option<Duration>, String> {
    let Some(value) = value else { return Ok(None) };
    let duration =
        go_duration(value).map_err(|error| format!("Invalid check: {field}: {error}"))?;
    if duration.is_zero() {
        return Ok(None);
    }
    if duration < shortest || duration > LONGEST_CHECK_DURATION {
        let longest = humantime::format_duration(LONGEST_CHECK_DURATION);
        let allowed = match shortest {
            Duration::ZERO => format!("at most {longest}"),
            shortest => format!("from {} to {longest}", humantime::format_duration(shortest)),
        };
        return Err(format!("Invalid check: {field} must be {allowed}, not {value}"));
    }
    Ok(Some(duration))
}

/// A Go duration as Consul's clients send it: "10s", "1m30s", "500ms".
fn go_duration(value: &Value) -> Result<Duration, String> {
    let text = value.as_str().ok_or(format!("invalid duration {value}"))?;
    humantime::parse_duration(text).map_err(|error| format!("invalid duration '{text}': {error}"))
}

async fn deregister(registry: web::Data<Registry>, id: web::Path<String>) -> HttpResponse {
    let removed = registry.write(|state| {
        let removed = state.instances.remove(id.as_str()).is_some();
        if removed {
            state.bump();
        }
        removed
    });
    if removed {
        info!("{id} deregistered");
        HttpResponse::Ok().finish()
    } else {
        let message = format!(
            "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
        );
        plain(StatusCode::NOT_FOUND, message)
    }
}

#[derive(Deserialize)]
struct Note {
    note: Option<String>,
}

/// `PUT /v1/agent/check/pass/:id` (and warn, fail): a TTL check's heartbeat.
async fn set_check(
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
    note: web::Query<Note>,
) -> HttpResponse {
    let (status, check_id) = path.into_inner();
    let status = match status.as_str() {
        "pass" => Status::Passing,
        "warn" => Status::Warning,
        "fail" => Status::Critical,
        _ => return plain(StatusCode::NOT_FOUND, format!("no such endpoint: check/{status}")),
    };
    let output: String = note.into_inner().note.unwrap_or_default();
    // Consul keeps this much of a check's output (`check_output_max_size`):
    // it is for the dashboard, not a store.
    let output = cut(&output, LONGEST_OUTPUT).to_string();
    match registry.write(|state| state.report(&check_id, status, output)) {
        Reported::Done => HttpResponse::Ok().finish(),
        Reported::UnknownCheck => plain(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
            ),
        ),
        Reported::NotTtl => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CheckID \"{check_id}\" does not have associated TTL"),
        ),
    }
}

/// What came of a status report.
enum Reported {
    Done,
    UnknownCheck,
    /// Only TTL checks take reports: the registry runs HTTP checks itself.
    NotTtl,
}

// ---------------------------------------------------------------------------
// Reads: health and catalog, with the X-Consul-Index they reflect.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct HealthQuery {
    passing: Option<String>,
}

/// A JSON answer with the index it reflects.
fn indexed(index: u64, body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header(("X-Consul-Index", index.to_string())).json(body)
}

/// `GET /v1/health/service/:name`: the instances of a service with their
/// checks; with `?passing`, only those whose every check passes.
async fn health(
    registry: web::Data<Registry>,
    name: web::Path<String>,
    query: web::Query<HealthQuery>,
) -> HttpResponse {
    // A bare `?passing` means yes, as in Consul.
    let passing = match query.passing.as_deref() {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(other) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("Invalid value for ?passing: '{other}'"),
            );
        }
    };
    registry.read(|state| {
        let entries: Vec<Value> = state
            .instances
            .values()
            .filter(|instance| instance.name == *name)
            .filter(|instance| !passing || instance.status() == Status::Passing)
            .map(|instance| {
                json!({
                    "Node": { "Node": NODE, "Address": "127.0.0.1", "Datacenter": DATACENTER },
                    "Service": {
                        "ID": instance.id,
                        "Service": instance.name,
                        "Address": instance.address,
                        "Port": instance.port,
                    },
                    "Checks": instance.checks.iter().map(|check| json!({
                        "CheckID": check.id,
                        "Name": check.name,
                        "Status": check.status,
                        "Output": check.output,
                        "ServiceID": instance.id,
                        "ServiceName": instance.name,
                        "Type": check.probe.kind(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        indexed(state.index, entries)
    })
}

/// `GET /v1/catalog/services`: every service name (with its tags, in
/// Consul; this registry keeps no tags).
async fn catalog_services(registry: web::Data<Registry>) -> HttpResponse {
    registry.read(|state| {
        let services: BTreeMap<&str, [&str; 0]> =
            state.instances.values().map(|instance| (instance.name.as_str(), [])).collect();
        indexed(state.index, services)
    })
}

/// `GET /prometheus/targets`: every instance, as Prometheus's HTTP service
/// discovery takes it (the Prometheus that Debian ships has no Consul
/// discovery). Every instance, whatever its health, so that Prometheus
/// sees a sick one too; and the registry itself, first.
async fn prometheus_targets(
    registry: web::Data<Registry>,
    itself: web::Data<Itself>,
) -> HttpResponse {
    let itself = json!({
        "targets": [itself.0.to_string()],
        "labels": { "service": NAME, "service_id": NAME, "health": "passing" },
    });
    registry.read(|state| {
        let groups: Vec<Value> = std::iter::once(itself)
            .chain(state.instances.values().map(|instance| {
                let address = match instance.address.as_str() {
                    "" => "127.0.0.1".to_string(),
                    ipv6 if ipv6.contains(':') => format!("[{ipv6}]"),
                    address => address.to_string(),
                };
                json!({
                    "targets": [format!("{address}:{}", instance.port)],
                    "labels": {
                        "service": instance.name,
                        "service_id": instance.id,
                        "health": instance.status().as_str(),
                    },
                })
            }))
            .collect();
        HttpResponse::Ok().json(groups)
    })
}

/// `GET /v1/status/leader`: the address of the cluster's leader, which is
/// always this registry. Services ask it to learn that the registry
/// answers (the check of their `/healthz`), as they would ask Consul.
async fn leader() -> HttpResponse {
    HttpResponse::Ok().json("127.0.0.1:8300")
}

/// The registry depends on nothing; it fails once a panic may have left
/// its state half-changed (a bug), which only a restart can mend.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    registry: web::Data<Registry>,
) -> HttpResponse {
    let state = async {
        if registry.state.is_poisoned() {
            Err("a request panicked while it changed the registry's state, which may now be \
                 inconsistent: restart the registry"
                .to_string())
        } else {
            Ok("consistent".to_string())
        }
    };
    crate::health_report(
        &overridden,
        vec![crate::DependencyCheck::new("state", crate::Health::Fail, state)],
    )
    .await
}

// ---------------------------------------------------------------------------
// The dashboard: one HTML page, as Consul's and Eureka's registries serve.
// ---------------------------------------------------------------------------

/// The most of an instance's output a dashboard row shows, in bytes: its
/// start says what is wrong, and `/v1/health/service/<name>` has the rest.
const DASHBOARD_OUTPUT: usize = 1024;

async fn dashboard(registry: web::Data<Registry>) -> HttpResponse {
    let escape = |text: &str| quick_xml::escape::escape(text).into_owned();
    let rows = registry.read(|state| {
        let mut rows = String::new();
        for instance in state.instances.values() {
            let status = instance.status().as_str();
            let checked = instance.checks.iter().filter_map(|check| check.last_checked).max();
            let checked = match checked.and_then(|at| at.elapsed().ok()) {
                Some(ago) => format!("{} s ago", ago.as_secs()),
                None => "never".to_string(),
            };
            let output: Vec<&str> = instance.checks.iter().map(|check| check.output.as_str()).collect();
            let mut output = output.join("; ");
            if output.len() > DASHBOARD_OUTPUT {
                output = format!("{} …", cut(&output, DASHBOARD_OUTPUT));
            }
            rows += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}:{}</td><td class=\"{status}\">{status}</td><td>{checked}</td><td>{}</td></tr>\n",
                escape(&instance.name),
                escape(&instance.id),
                escape(&instance.address),
                instance.port,
                escape(&output),
            );
        }
        if rows.is_empty() {
            rows = "<tr><td colspan=\"6\">No service is registered.</td></tr>\n".to_string();
        }
        format!("<p>index {}</p>\n<table>\n<tr><th>service</th><th>instance</th><th>address</th><th>status</th><th>last checked</th><th>output</th></tr>\n{rows}</table>", state.index)
    });
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Service registry</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .8em;text-align:left;max-width:50em;overflow-wrap:anywhere}}\
         .passing{{background:#cfc}}.warning{{background:#ffc}}.critical{{background:#fcc}}</style>\n\
         </head><body>\n<h1>Service registry</h1>\n{rows}\n<p>Reload the page to see changes.</p>\n</body></html>\n"
    ))
}

// ---------------------------------------------------------------------------
// Helpers: routes that take one method, and plain-text errors like Consul's.
// ---------------------------------------------------------------------------

/// A write: PUT only, as in Consul, and only with the ACL token if one is set.
fn put<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::put().to(handler).wrap(from_fn(require_acl_token)))
        .default_service(web::to(|| async { wrong_method("PUT") }))
}

/// With an ACL token set, a write without it is refused as Consul refuses
/// it (403 "Permission denied"). Reads stay open: the dashboard, health and
/// catalog are what a learner watches and what every service asks, and
/// they show no more than the addresses the services answer on anyway.
async fn require_acl_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let registry =
        request.app_data::<web::Data<Registry>>().expect("the registry's state is registered");
    if let Some(token) = &registry.acl_token {
        let presented = request.headers().get("X-Consul-Token").map(HeaderValue::as_bytes);
        // A constant-time comparison: how long it takes says nothing about
        // how much of a guessed token was right.
        if !presented.is_some_and(|presented| bool::from(presented.ct_eq(token.as_bytes()))) {
            let message = "Permission denied: writes need the registry's ACL token as \
                           X-Consul-Token (services: set REGISTRY_TOKEN)";
            let response = plain(StatusCode::FORBIDDEN, message);
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    next.call(request).await.map(ServiceResponse::map_into_left_body)
}

fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path).get(handler).default_service(web::to(|| async { wrong_method("GET") }))
}

fn wrong_method(allowed: &'static str) -> HttpResponse {
    let mut response =
        plain(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allowed}"));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

fn plain(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_the_state_is_locked_leaves_it_usable() {
        let registry = Registry::new(None);
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|_| panic!("a bug, while the state is locked"));
        }));
        assert!(panicked.is_err());

        let entry = br#"{ "Name": "service2", "Check": { "TTL": "10s" } }"#;
        assert!(registry.write(|state| state.register(parse_registration(entry).unwrap())).is_ok());
        assert_eq!(registry.read(|state| state.instances.len()), 1, "it still takes writes");
        registry.write(|state| state.sweep(Instant::now()));
    }

    #[test]
    fn a_sweep_starts_no_more_http_checks_than_its_share() {
        let registry = Registry::new(None);
        for port in 1..=4 {
            let checks: Vec<Value> = (0..8)
                .map(
                    |n| json!({ "HTTP": format!("http://127.0.0.1:{port}/{n}"), "Interval": "1s" }),
                )
                .collect();
            let entry =
                json!({ "Name": "s", "ID": format!("s-{port}"), "Port": port, "Checks": checks });
            let registration = parse_registration(entry.to_string().as_bytes()).unwrap();
            assert!(registry.write(|state| state.register(registration)).is_ok());
        }
        let now = Instant::now();
        let first = registry.write(|state| state.sweep(now));
        assert_eq!(first.len(), CHECKS_PER_SWEEP);
        // The 25 are running; the 7 left go at the next sweep.
        let second = registry.write(|state| state.sweep(now));
        assert_eq!(second.len(), 32 - CHECKS_PER_SWEEP);
        assert!(second.iter().all(|due| first.iter().all(|run| run.check_id != due.check_id)));
    }

    #[actix_web::test]
    async fn after_a_panic_while_the_state_is_locked_healthz_fails() {
        let registry = web::Data::new(Registry::new(None));
        let health = |registry| healthz(web::Data::new(HealthOverride::default()), registry);
        assert_eq!(health(registry.clone()).await.status(), StatusCode::OK);
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|_| panic!("a bug, while the state is locked"));
        }));

        let answer = health(registry).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = actix_web::body::to_bytes(answer.into_body()).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["checks"]["state"][0]["status"], "fail");
        let output = body["checks"]["state"][0]["output"].as_str().unwrap();
        assert!(output.contains("restart the registry"), "{output}");
    }
}
