//! A service's life, the same for every service of the step: its log lines
//! start, its port is bound (or it says why not, and stops), its server
//! answers until the service is told to stop, and then it stops gracefully
//! and its last log lines go out. `main.rs` calls [`run`] with the
//! service's server, which each service's file builds.

use std::io::{self, IsTerminal};
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::dev::Server;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use super::output::Output;
use super::{StoppedBy, listen, shutdown_signal};

/// What [`run`] needs besides the server: named, so that a call says what
/// each value is.
pub struct RunOptions {
    pub service: &'static str,
    pub host: String,
    pub port: u16,
    pub stopped_by: StoppedBy,
}

/// How long the terminal has to take a service's last log lines.
const LAST_LINES_WITHIN: Duration = Duration::from_secs(2);

/// Runs one service until it is told to stop (see [`StoppedBy`]), then
/// stops it gracefully: it stops accepting connections, lets the requests
/// in flight finish, and exits with 0.
///
/// `make_server` gets the listener already bound, so that a port in use is
/// reported before anything else happens (and so that tests can hand a
/// service a listener on port 0).
pub fn run(
    options: RunOptions,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    let log = Output::open(io::stdout(), options.service);
    init_logging(log.clone());
    let exit = serve_until_stopped(options, make_server);
    log.flush(LAST_LINES_WITHIN);
    exit
}

fn serve_until_stopped(
    options: RunOptions,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    let RunOptions { service, host, port, stopped_by } = options;
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

        let running = server.handle();
        actix_web::rt::spawn(async move {
            shutdown_signal(stopped_by).await;
            info!("{service} stopping");
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

/// Human-readable log lines on stdout, filtered by `RUST_LOG` (default
/// `info`, without actix's own start-up chatter), coloured only when a
/// person is watching; written through `to`, which never waits.
fn init_logging(to: Output) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(io::stdout().is_terminal())
        .with_writer(to)
        .init();
}
