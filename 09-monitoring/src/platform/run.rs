//! A service's life, the same for every service of the step: its log lines
//! and traces start, its port is bound (or it says why not, and stops),
//! its server answers until the service is told to stop, and then it stops
//! gracefully and its last log lines go out. `main.rs` calls [`run`] with
//! the service's server, which each service's file builds.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::dev::Server;
use tracing::{error, info};

use super::output::Output;
use super::{StoppedBy, listen, shutdown_signal};
use crate::registration::{Registration, RegistrationOptions};
use crate::{monitoring, telemetry};

/// What [`run`] needs besides the server: named, so that a call says what
/// each value is.
pub struct RunOptions {
    pub service: &'static str,
    pub host: String,
    pub port: u16,
    pub stopped_by: StoppedBy,
    pub registration: Option<RegistrationOptions>,
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
///
/// A service given `registration` options registers with the registry once
/// it listens, keeps its entry alive, and deregisters first when it stops,
/// so that no client is sent to it while it shuts down.
pub fn run(
    options: RunOptions,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    let log = Output::open(io::stdout(), options.service);
    let exit = match telemetry::init_telemetry(options.service, log.clone()) {
        // Dropped once the service has stopped: the spans still waiting
        // are sent before its last lines.
        Ok(_telemetry) => {
            // Ready to count before the port is bound: from then on, the
            // launcher (and clients) may start calling.
            monitoring::init();
            serve_until_stopped(options, make_server)
        }
        Err(message) => {
            error!("{} cannot start: {message}", options.service);
            ExitCode::FAILURE
        }
    };
    log.flush(LAST_LINES_WITHIN);
    exit
}

fn serve_until_stopped(
    options: RunOptions,
    make_server: impl FnOnce(TcpListener) -> io::Result<Server>,
) -> ExitCode {
    let RunOptions { service, host, port, stopped_by, registration } = options;
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
