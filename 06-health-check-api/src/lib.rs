//! Step 06: health endpoints, and a registry that checks them.
//!
//! Each service has a file of its own (`service1.rs`, `service2.rs`). This
//! file holds what every service of the step shares: logging, listening on a
//! port, graceful shutdown, and the shape of errors.

pub mod gateway;
pub mod registry;
pub mod service1;
pub mod service2;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IsTerminal};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::rt::task::JoinHandle;
use actix_web::{
    App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Responder, ResponseError,
    middleware, web,
};
use awc::error::{ConnectError, SendRequestError};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Level, error, info, warn};
use tracing_subscriber::EnvFilter;

/// Runs one service until Ctrl-C or SIGTERM, then stops it gracefully: it
/// stops accepting connections, lets the requests in flight finish, and
/// exits with 0.
///
/// `make_server` gets the listener already bound, so that a port in use is
/// reported before anything else happens (and so that tests can hand a
/// service a listener on port 0).
///
/// A service given `registration` options registers with the registry once
/// it listens, keeps its entry alive, and deregisters first when it stops,
/// so that no client is sent to it while it shuts down.
pub fn run(
    service: &'static str,
    host: &str,
    port: u16,
    supervised: bool,
    registration: Option<RegistrationOptions>,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    init_logging();
    let listener = match listen(service, host, port) {
        Ok(listener) => listener,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    actix_web::rt::System::new().block_on(async move {
        let address = listener.local_addr().expect("a bound listener has an address");
        let server = match make_server(listener) {
            Ok(server) => server,
            Err(problem) => {
                error!("{service} cannot start: {problem}");
                return ExitCode::FAILURE;
            }
        };
        info!("{service} listening on http://{address} (pid {})", std::process::id());
        let registered =
            registration.map(|options| Registration::new(service, address, options).start());

        let running = server.handle();
        actix_web::rt::spawn(async move {
            shutdown_signal(supervised).await;
            info!("{service} stopping");
            if let Some(registered) = registered {
                registered.leave().await;
            }
            running.stop(true).await;
        });
        match server.await {
            Ok(()) => {
                info!("{service} stopped");
                ExitCode::SUCCESS
            }
            Err(problem) => {
                error!("{service} failed: {problem}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Human-readable log lines on stdout, filtered by `RUST_LOG` (default
/// `info`, without actix's own start-up chatter), coloured only when a
/// person is watching.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(io::stdout().is_terminal())
        // When the launcher is gone, a log line has nowhere to go; reporting
        // that on stderr (gone too) would panic, and the service could then
        // not shut down.
        .log_internal_errors(false)
        .init();
}

/// Binds the service's port. "Address already in use" is the classic
/// classroom error (the previous step is still running), so the errors a
/// learner can meet here say what to do about them.
pub fn listen(service: &str, host: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind((host, port)).map_err(|error| {
        let place = format!("{service} cannot listen on {host}:{port}");
        let port_variable = format!("{}_PORT", service.to_uppercase());
        match error.kind() {
            io::ErrorKind::AddrInUse => format!(
                "{place}: the port is already in use.\n\
                 Is a previous step, or another copy of this one, still running? \
                 Stop it with Ctrl-C in its terminal,\n\
                 or give {service} another port: {port_variable}=<N> for the whole step,\n\
                 or `{service} --port <N>` when it runs alone."
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "{place}: {host} is not an address of this machine.\n\
                 Use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every network)."
            ),
            io::ErrorKind::PermissionDenied => format!(
                "{place}: ports below 1024 need administrator rights.\n\
                 Give {service} a port above 1023: {port_variable}=<N>, or `--port <N>` alone."
            ),
            _ => {
                format!("{place}: {error}.\nCheck --host (BIND_HOST) and --port ({port_variable}).")
            }
        }
    })
}

/// Builds the HTTP server of a service from its routes, on a listener
/// that is already bound.
///
/// The server does not react to Ctrl-C by itself (`disable_signals`):
/// [`run`] decides when to stop it. It then gives requests in flight five
/// seconds to finish, not actix's default thirty: a workshop service should
/// not keep a learner's terminal waiting.
pub fn serve<F>(listener: TcpListener, routes: F) -> io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    // One override for all the workers of the service (see `health`).
    let overridden = web::Data::new(HealthOverride::default());
    let log_requests = tracing::enabled!(target: "actix_web::middleware::logger", Level::INFO);
    let server = HttpServer::new(move || {
        App::new()
            // One log line per request: method, path, status, size, time.
            // (Not even the middleware when RUST_LOG leaves those lines out:
            // it would cost time on every request for nothing.)
            // Health checks are left out (the registry's calls to /healthz,
            // and the registry's answers to the services' own checks): every
            // few seconds for every service, they would drown the rest. The
            // registry's dashboard shows them.
            .wrap(middleware::Condition::new(
                log_requests,
                middleware::Logger::new(r#""%r" %s %bB %Dms"#)
                    .exclude("/healthz")
                    .exclude("/v1/agent/self"),
            ))
            .app_data(overridden.clone())
            .service(
                web::resource("/healthz/override")
                    .put(set_health_override)
                    .delete(clear_health_override),
            )
            .configure(routes.clone())
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}

/// A service's health, in the words of the IETF draft "Health Check
/// Response Format for HTTP APIs": pass, warn (degraded, still serving) or
/// fail (take it out of rotation). Ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Pass,
    Warn,
    Fail,
}

impl Health {
    /// As Consul reads a health endpoint's status: 2xx passing, 429
    /// warning, anything else critical.
    fn status_code(self) -> StatusCode {
        match self {
            Health::Pass => StatusCode::OK,
            Health::Warn => StatusCode::TOO_MANY_REQUESTS,
            Health::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How long one health check may take: a hung dependency must not hang
/// the health endpoint, which would then look hung itself.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One check of a service's health, usually of something it depends on:
/// its name in the health document (`service2:reachability`), how bad it
/// is when it fails (a dependency that is down makes a service degraded,
/// `Warn`, not dead), and the check itself, which says what it saw.
pub struct Check<'a> {
    name: &'static str,
    when_failing: Health,
    run: futures_util::future::LocalBoxFuture<'a, Result<String, String>>,
}

impl<'a> Check<'a> {
    pub fn new(
        name: &'static str,
        when_failing: Health,
        run: impl Future<Output = Result<String, String>> + 'a,
    ) -> Self {
        Check { name, when_failing, run: Box::pin(run) }
    }
}

/// A health set by hand, with `PUT /healthz/override` (`fail` or `warn`),
/// until `DELETE /healthz/override`: a way to take an instance out of
/// rotation, for maintenance, or to see what the registry does about it.
#[derive(Default)]
pub struct HealthOverride(Mutex<Option<Health>>);

async fn set_health_override(
    overridden: web::Data<HealthOverride>,
    request: HttpRequest,
    body: String,
) -> HttpResponse {
    if let Err(problem) = from_this_machine(&request) {
        return problem.error_response();
    }
    let health = match body.trim() {
        "fail" => Health::Fail,
        "warn" => Health::Warn,
        other => {
            let detail =
                format!("send fail or warn (or DELETE to clear the override), not {other:?}");
            return Problem::new(StatusCode::BAD_REQUEST, detail).error_response();
        }
    };
    *overridden.0.lock().expect("health override") = Some(health);
    warn!("health set by hand to {}", body.trim());
    HttpResponse::NoContent().finish()
}

async fn clear_health_override(
    overridden: web::Data<HealthOverride>,
    request: HttpRequest,
) -> HttpResponse {
    if let Err(problem) = from_this_machine(&request) {
        return problem.error_response();
    }
    *overridden.0.lock().expect("health override") = None;
    info!("health override cleared");
    HttpResponse::NoContent().finish()
}

/// The override is for whoever runs the service, so it answers to this
/// machine only (a service may listen on 0.0.0.0).
fn from_this_machine(request: &HttpRequest) -> Result<(), Problem> {
    match request.peer_addr() {
        Some(peer) if peer.ip().is_loopback() => Ok(()),
        _ => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "the health override answers to this machine only",
        )),
    }
}

/// Runs `checks` at once, each within `HEALTH_CHECK_TIMEOUT`, and answers
/// the health document (`application/health+json`): the worst status of
/// all checks, 200 for pass, 429 for warn, 503 for fail.
pub async fn health_report(overridden: &HealthOverride, checks: Vec<Check<'_>>) -> HttpResponse {
    let names: Vec<(&str, Health)> = checks.iter().map(|c| (c.name, c.when_failing)).collect();
    let results = futures_util::future::join_all(checks.into_iter().map(|check| async move {
        let started = Instant::now();
        let result = match actix_web::rt::time::timeout(HEALTH_CHECK_TIMEOUT, check.run).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(HEALTH_CHECK_TIMEOUT)
            )),
        };
        (result, started.elapsed())
    }))
    .await;

    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut status = Health::Pass;
    let mut details = serde_json::Map::new();
    for ((name, when_failing), (result, took)) in names.into_iter().zip(results) {
        let (check_status, output) = match result {
            Ok(output) => (Health::Pass, output),
            Err(output) => (when_failing, output),
        };
        status = status.max(check_status);
        let detail = json!([{
            "status": check_status,
            "observedValue": took.as_millis() as u64,
            "observedUnit": "ms",
            "time": now,
            "output": output,
        }]);
        details.insert(name.to_string(), detail);
    }
    if let Some(set_by_hand) = *overridden.0.lock().expect("health override") {
        status = status.max(set_by_hand);
        let output = "set by hand with PUT /healthz/override; DELETE it to clear";
        details.insert(
            "override".to_string(),
            json!([{ "status": set_by_hand, "time": now, "output": output }]),
        );
    }
    HttpResponse::build(status.status_code())
        .content_type("application/health+json")
        .json(json!({ "status": status, "checks": details }))
}

/// Resolves when the service should stop: on Ctrl-C or SIGTERM (Unix) for a
/// service run alone. A service started by the launcher (`supervised`)
/// stops when its stdin closes, which is how the launcher stops it: that
/// works the same on every OS, lets the launcher choose the order, and also
/// stops the service if the launcher itself is killed, instead of leaving
/// it behind holding its port.
pub async fn shutdown_signal(supervised: bool) {
    let interrupted = async {
        // Ctrl-C in a terminal reaches every process of the step at once;
        // under the launcher, it is the launcher's to act on.
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await
            }
            if !supervised {
                return;
            }
        }
    };
    let launcher_gone =
        async { if supervised { stdin_closed().await } else { std::future::pending().await } };
    tokio::select! {
        _ = interrupted => {}
        _ = terminate() => {}
        _ = launcher_gone => {}
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            sigterm.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Windows has no SIGTERM; Ctrl-C and the launcher closing stdin remain.
#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

async fn stdin_closed() {
    // A plain thread, because a read from stdin blocks and cannot be
    // cancelled: it must not hold up the async runtime when it shuts down.
    let (closed, on_closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = closed.send(());
    });
    let _ = on_closed.await;
}

/// An error as a client sees it: RFC 9457 problem details, served as
/// `application/problem+json`, so that every error of every service has one
/// shape a client can read, whatever went wrong.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// `about:blank` means "nothing more to say than the status code", whose
    /// reason phrase is then the title (RFC 9457, section 4.2.1).
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    /// What went wrong this time, in words a person can act on.
    detail: String,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header that the status code calls for, such as `Allow` on 405.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(self)
    }
}

/// A handler can answer with a `Problem` directly.
impl Responder for Problem {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

/// Routes a GET on any path to `handler`, and answers any other method
/// with 405 Method Not Allowed.
pub fn on_every_get<F, Args>(routes: &mut web::ServiceConfig, handler: F)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    routes.service(web::resource("/{any:.*}").get(handler).default_service(web::to(only_get)));
}

/// The answer to a method a GET-only route does not serve.
pub async fn only_get(request: HttpRequest) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not served here; only GET is", request.method()),
    )
    .with_header(header::ALLOW, HeaderValue::from_static("GET"))
}

/// Checks a URL given as an option, such as `--service2-url`, when the
/// service starts: a typo should stop it at once with a clear message, not
/// turn every request into a puzzling 502 later.
pub fn http_url(text: &str) -> Result<String, String> {
    let not_http = || "not an http:// URL (for example http://127.0.0.1:3003)".to_string();
    let uri: Uri = text.parse().map_err(|_| not_http())?;
    let port = uri.authority().and_then(|authority| authority.as_str().rsplit_once(':'));
    let port = port.map(|(_, port)| port).filter(|port| !port.ends_with(']')); // not IPv6's
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_))
            if port.is_some_and(|port| !matches!(port.parse(), Ok(1..=u16::MAX))) =>
        {
            Err("the port is not a number from 1 to 65535".into())
        }
        (Some("http"), Some(_)) => Ok(text.trim_end_matches('/').to_string()),
        (Some("https"), _) => Err("https is not supported by the workshop's services".into()),
        _ => Err(not_http()),
    }
}

/// An HTTP client for calls to other services. Create one per worker
/// thread and reuse it: it keeps connections open between calls, which is
/// much cheaper than a new connection (and client) per request.
pub fn http_client() -> awc::Client {
    // No client-wide timeout: each call has its own deadline (`Upstream`).
    awc::Client::builder().disable_timeout().finish()
}

/// A service that this one calls over HTTP: its name (for messages), where
/// it answers, and how long a call to it may take, from connecting to the
/// last byte of the answer. Without that deadline, one stuck service would
/// leave every caller stuck too.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
}

impl Upstream {
    /// GETs `path` from the upstream and reads its JSON answer. Every way
    /// this can fail becomes the problem our own client should see: 502
    /// when the upstream is down or answers badly, 504 when it is too slow.
    pub async fn get_json(
        &self,
        client: &awc::Client,
        path: &str,
    ) -> Result<serde_json::Value, Problem> {
        let url = format!("{}{path}", self.url);
        let call = async {
            let mut response = client.get(&url).send().await.map_err(|error| self.failed(error))?;
            if !response.status().is_success() {
                // Pass on the upstream's own explanation, if it gave one.
                let status = response.status();
                let problem: Option<Value> = response.json().await.ok();
                let detail = problem.as_ref().and_then(|problem| problem["detail"].as_str());
                let what = match detail {
                    Some(detail) => format!("answered {status}: {detail}"),
                    None => format!("answered {status}"),
                };
                return Err(self.bad_gateway(&what));
            }
            response.json().await.map_err(|error| {
                self.bad_gateway(&format!("answered something that is not JSON ({error})"))
            })
        };
        let answer = match actix_web::rt::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(self.too_slow()),
        };
        answer.inspect_err(|problem| warn!("{}", problem.detail))
    }

    /// The problem for a call that did not get an answer at all.
    pub fn failed(&self, error: SendRequestError) -> Problem {
        let what = match &error {
            SendRequestError::Connect(ConnectError::Io(io))
                if io.kind() == io::ErrorKind::ConnectionRefused =>
            {
                "refused the connection: is it running?".to_string()
            }
            SendRequestError::Connect(ConnectError::Resolver(_)) => {
                "cannot be found: is the host name in its URL right?".to_string()
            }
            SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
                return self.too_slow();
            }
            _ => format!("failed: {error}"),
        };
        self.bad_gateway(&what)
    }

    fn bad_gateway(&self, what: &str) -> Problem {
        Problem::new(StatusCode::BAD_GATEWAY, format!("{} at {} {what}", self.name, self.url))
    }

    fn too_slow(&self) -> Problem {
        let timeout = humantime::format_duration(self.timeout);
        let detail = format!("{} at {} did not answer within {timeout}", self.name, self.url);
        Problem::new(StatusCode::GATEWAY_TIMEOUT, detail)
    }
}

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
}

/// How long the registry waits for an answer from /healthz: more than a
/// dependency check may take there, so that a slow dependency shows as a
/// warning in the answer, not as a missing answer.
const CHECK_TIMEOUT: &str = "2s";

/// How often a registered service registers again: a restarted registry
/// has forgotten everyone, and registering again is harmless to one that
/// has not (Consul's agents do the same).
const REGISTER_AGAIN_EVERY: Duration = Duration::from_secs(10);

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
        let entry = json!({
            "Name": service,
            "ID": id,
            "Address": ip,
            "Port": address.port(),
            "Check": {
                "CheckID": format!("service:{id}"),
                "HTTP": format!("http://{ip}:{}/healthz", address.port()),
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
        };
        Registration { registry, id, entry }
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
                Err(problem) => {
                    let pause = humantime::format_duration(retry_in);
                    warn!("cannot register: {}; retrying in {pause}", problem.detail);
                    registered = false;
                    actix_web::rt::time::sleep(retry_in).await;
                    retry_in = (retry_in * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn put(
        &self,
        client: &awc::Client,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), Problem> {
        let request =
            client.put(format!("{}{path}", self.registry.url)).timeout(self.registry.timeout);
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|error| self.registry.failed(error))?;
        if response.status().is_success() {
            return Ok(());
        }
        let said = response.body().await.unwrap_or_default();
        let detail = format!(
            "the registry answered {}: {}",
            response.status(),
            String::from_utf8_lossy(&said)
        );
        Err(Problem::new(response.status(), detail))
    }
}

impl Registered {
    /// Stops registering and removes the entry, so that clients stop being
    /// sent here before the service stops answering.
    pub async fn leave(self) {
        self.refresh.abort();
        let registration = self.registration;
        let path = format!("/v1/agent/service/deregister/{}", registration.id);
        match registration.put(&http_client(), &path, None).await {
            Ok(()) => info!("deregistered {}", registration.id),
            // When the whole step stops, the registry may stop first.
            Err(problem) => {
                info!("not deregistered ({}); is the registry stopping too?", problem.detail)
            }
        }
    }
}

/// Client-side discovery: asks the registry for the healthy instances of a
/// service (passing or warning, not critical), spreads calls over them in
/// turn (round-robin), and remembers each answer for a second, so that not
/// every call costs a trip to the registry. (A second is shorter than any
/// check interval, so what it remembers is never much older than what the
/// registry knows. Consul's blocking queries, which the registry also
/// serves, would push changes instead; a short memory is simpler and works
/// for any service name.)
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
        let registry = Upstream {
            name: "registry".to_string(),
            url: registry_url,
            timeout: Duration::from_secs(2),
        };
        Discovery { registry, call_timeout, known: Mutex::new(HashMap::new()) }
    }

    /// The next passing instance of `service` to call, or the problem that
    /// there is none: 503 when none is registered and passing, 502 or 504
    /// when the registry cannot be asked (and nothing is remembered).
    pub async fn find(&self, client: &awc::Client, service: &str) -> Result<Upstream, Problem> {
        let instance =
            |url| Upstream { name: service.to_string(), url, timeout: self.call_timeout };
        if let Some(url) = self.next_known(service, true) {
            return Ok(instance(url));
        }
        match self.ask_registry(client, service).await {
            Ok(urls) => {
                let instances = Instances { asked_at: Instant::now(), urls, next: 0 };
                self.known.lock().expect("discovery cache").insert(service.to_string(), instances);
            }
            // Better an instance the registry knew a moment ago than none.
            Err(problem) => match self.next_known(service, false) {
                Some(url) => {
                    warn!("{}; calling an instance of {service} known before", problem.detail);
                    return Ok(instance(url));
                }
                None => return Err(problem),
            },
        }
        match self.next_known(service, false) {
            Some(url) => Ok(instance(url)),
            None => {
                let detail = format!(
                    "no healthy instance of {service} is registered at {}",
                    self.registry.url
                );
                Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")))
            }
        }
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
        match self.registry.get_json(client, "/v1/agent/self").await {
            Ok(_) => Ok(format!("the registry at {} answers", self.registry.url)),
            Err(problem) => Err(format!("{}; using the instances known before", problem.detail)),
        }
    }

    /// The next of the remembered instances, in turn; with `fresh`, only if
    /// they were asked for less than a second ago.
    fn next_known(&self, service: &str, fresh: bool) -> Option<String> {
        let mut known = self.known.lock().expect("discovery cache");
        let instances = known.get_mut(service)?;
        if instances.urls.is_empty()
            || (fresh && instances.asked_at.elapsed() > REMEMBER_INSTANCES_FOR)
        {
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
        let entries =
            self.registry.get_json(client, &format!("/v1/health/service/{service}")).await?;
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
