//! Step 10: CQRS: commands change the data of their own service, a report reads them all.
//!
//! Each service has a file of its own (`service1.rs`, `service2.rs`, …),
//! and so has each pattern they share:
//! `discovery.rs`, `health.rs`, `breaker.rs`, `telemetry.rs`, `monitoring.rs`,
//! `events.rs`, `store.rs`.
//! This file holds the rest: listening on a port, graceful
//! shutdown, the shape of errors, and calls to other services.

pub mod accounts;
mod breaker;
pub mod demo;
mod discovery;
mod events;
pub mod gateway;
mod guards;
mod health;
mod monitoring;
mod registration;
pub mod registry;
pub mod reports;
pub mod service1;
pub mod service2;
mod store;
mod telemetry;
mod upstream;
pub mod users;

pub use breaker::{Breaker, BreakerOptions, Breakers, breaker_states};
pub use discovery::Discovery;
pub use health::{DependencyCheck, HEALTH_CHECK_TIMEOUT, Health, HealthOverride, health_report};
pub use registration::{REGISTRY_URL, Registered, Registration, RegistrationOptions};
pub use upstream::{Body, CallError, Upstream, http_client};

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::process::ExitCode;

use actix_web::body::BoxBody;
use actix_web::dev::Server;
use actix_web::error::JsonPayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::{
    App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Responder, ResponseError,
    middleware, web,
};
use serde::Serialize;
use tracing::{error, info};
use tracing_actix_web::TracingLogger;

/// What [`run`] needs besides the server: named, so that a call says what
/// each value is.
pub struct RunOptions {
    pub service: &'static str,
    pub host: String,
    pub port: u16,
    pub stopped_by: StoppedBy,
    pub registration: Option<RegistrationOptions>,
}

/// Runs one service until it is told to stop (see [`StoppedBy`]), then
/// stops it gracefully: it stops accepting connections, lets the requests
/// in flight finish, and exits with 0.
///
/// `make_server` gets the listener already bound, so that a port in use is
/// reported before anything else happens (and so that tests can hand a
/// service a listener on port 0).
///
/// A service given `registration` options registers with the registry once
/// it listens, keeps its entry alive, and deregisters first when it stops,
/// so that no client is sent to it while it shuts down.
pub fn run(
    options: RunOptions,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    let RunOptions { service, host, port, stopped_by, registration } = options;
    // Dropped last: the spans still waiting are sent before the process ends.
    let _telemetry = match telemetry::init_telemetry(service) {
        Ok(telemetry) => telemetry,
        Err(message) => {
            error!("{service} cannot start: {message}");
            return ExitCode::FAILURE;
        }
    };
    // Ready to count before the port is bound: from then on, the launcher
    // (and clients) may start calling.
    monitoring::init();
    let listener = match listen(service, &host, port) {
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
            shutdown_signal(stopped_by).await;
            info!("{service} stopping");
            STOPPING.send_replace(true);
            if let Some(registered) = registered {
                registered.leave().await;
            }
            running.stop(/* graceful */ true).await;
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
    monitoring::init(); // done already in a service started by `run`
    let server = HttpServer::new(move || {
        App::new()
            // Every request counted and timed, for Prometheus.
            .wrap(middleware::from_fn(monitoring::count_requests))
            // The trace id in every answer (inside the span, which it reads).
            .wrap(middleware::from_fn(telemetry::trace_id_header))
            // A span for every request, as a child of the caller's span; it
            // also writes the request's log line. Health checks are left out:
            // every few seconds for every service, they would drown the
            // rest, and the registry's dashboard shows them.
            .wrap(TracingLogger::<telemetry::RequestSpan>::new())
            .app_data(overridden.clone())
            .route("/metrics", web::get().to(monitoring::metrics_page))
            .service(
                web::resource("/healthz/override")
                    .put(health::set_health_override)
                    .delete(health::clear_health_override),
            )
            .configure(routes.clone())
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}

/// What tells a process to stop: see [`shutdown_signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoppedBy {
    /// Ctrl-C or SIGTERM: a service run alone, and the launcher itself.
    CtrlC,
    /// The launcher, closing the service's stdin (SIGTERM still works).
    Launcher,
}

/// Resolves when the service should stop: on Ctrl-C or SIGTERM (Unix) for a
/// service run alone. A service started by the launcher
/// (`StoppedBy::Launcher`) stops when its stdin closes, which is how the
/// launcher stops it: that works the same on every OS, lets the launcher
/// choose the order, and also stops the service if the launcher itself is
/// killed, instead of leaving it behind holding its port.
pub async fn shutdown_signal(stopped_by: StoppedBy) {
    let interrupted = async {
        // Ctrl-C in a terminal reaches every process of the step at once;
        // under the launcher, it is the launcher's to act on.
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await
            }
            if stopped_by == StoppedBy::CtrlC {
                return;
            }
        }
    };
    let launcher_gone = async {
        match stopped_by {
            StoppedBy::Launcher => stdin_closed().await,
            StoppedBy::CtrlC => std::future::pending().await,
        }
    };
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
    method_not_allowed(&request, "GET", "only GET is")
}

/// How the services that take commands read a JSON body or a query
/// string: what serde says is wrong with it (a field missing, unknown, of
/// the wrong type or out of range) is the detail of a 400 problem.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(64 * 1024).error_handler(|error, _| {
        let detail = match error {
            JsonPayloadError::ContentType => {
                format!("{error}; send a JSON body, with Content-Type: application/json")
            }
            _ => error.to_string(),
        };
        Problem::new(error.status_code(), detail).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        Problem::new(StatusCode::BAD_REQUEST, format!("the query string: {error}")).into()
    })
}

/// The answer to a method a resource does not serve: 405, saying which it does.
pub fn not_allowed(allowed: &'static str) -> actix_web::Route {
    web::to(move |request: HttpRequest| async move {
        method_not_allowed(&request, allowed, &format!("{allowed} are"))
    })
}

/// 405 Method Not Allowed: the methods served are listed in the `Allow`
/// header, for a client, and said `in_words` in the detail, for a person.
fn method_not_allowed(request: &HttpRequest, allowed: &'static str, in_words: &str) -> Problem {
    let detail = format!("{} is not served here; {in_words}", request.method());
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, detail)
        .with_header(header::ALLOW, HeaderValue::from_static(allowed))
}

/// The answer to a path a service does not serve: 404, naming it.
pub async fn no_such_path(request: HttpRequest) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("nothing is served at {}", request.path()))
}

/// Set when the service starts to stop, for requests that wait (the event
/// feeds' long polls): they answer at once.
static STOPPING: std::sync::LazyLock<tokio::sync::watch::Sender<bool>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(false).0);

pub async fn stopping() {
    let _ = STOPPING.subscribe().wait_for(|stopping| *stopping).await;
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
