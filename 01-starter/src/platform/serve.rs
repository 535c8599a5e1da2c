//! The HTTP server of a service, built the same way for every service from
//! its routes: the middleware every request goes through (one log line
//! each), and a graceful stop that [`run`](super::run) decides on.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use tracing::Level;

/// Builds the HTTP server of a service from its routes, on a listener
/// that is already bound.
///
/// The server does not react to Ctrl-C by itself (`disable_signals`):
/// `run` decides when to stop it. It then gives requests in flight five
/// seconds to finish, not actix's default thirty: a workshop service should
/// not keep a learner's terminal waiting.
pub fn serve<F>(listener: TcpListener, routes: F) -> io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let log_requests = tracing::enabled!(target: "actix_web::middleware::logger", Level::INFO);
    let server = HttpServer::new(move || {
        App::new()
            // One log line per request: method, path, status, size, time.
            // (Not even the middleware when RUST_LOG leaves those lines out:
            // it would cost time on every request for nothing.)
            .wrap(middleware::Condition::new(
                log_requests,
                middleware::Logger::new(r#""%r" %s %bB %Dms"#),
            ))
            .configure(routes.clone())
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}
