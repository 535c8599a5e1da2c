//! The HTTP server of a service, built the same way for every service from
//! its routes: the middleware every request goes through (a count, a span,
//! its trace id, one log line each but for routine requests), what every
//! service answers (its metrics, its health override), and a graceful stop
//! that [`run`](super::run) decides on.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use tracing_actix_web::TracingLogger;

use crate::health::{self, HealthOverride};
use crate::{monitoring, telemetry};

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
            // also writes the request's log line. Routine requests are left
            // out (see `machinery.rs`): every second or so for every
            // service, they would drown the rest.
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
