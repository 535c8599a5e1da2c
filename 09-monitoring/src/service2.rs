//! service2: answers every GET, whatever the path, with its name as JSON.
//! It registers itself with the registry when it starts (see `run` and
//! `Registration` in registration.rs), so that service1 can find it.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::platform::{self, Problem};
use crate::{HealthOverride, RegistrationOptions};

pub const NAME: &str = "service2";

/// service2's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "SERVICE2_PORT", default_value_t = 3003)]
    pub port: u16,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

pub fn server(listener: TcpListener) -> io::Result<Server> {
    platform::serve(listener, |routes| {
        routes.route("/healthz", web::get().to(healthz));
        platform::on_every_get(routes, hello);
    })
}

/// service2 depends on nothing: it is healthy unless set otherwise by hand.
async fn healthz(overridden: web::Data<HealthOverride>) -> HttpResponse {
    crate::health_report(&overridden, Vec::new()).await
}

#[derive(Deserialize)]
struct Fail {
    fail: Option<String>,
}

/// `?fail=true` makes service2 fail on purpose, to trip its callers'
/// circuit breakers.
async fn hello(query: web::Query<Fail>) -> Result<HttpResponse, Problem> {
    if query.fail.as_deref() == Some("true") {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failing on purpose (?fail=true)",
        ));
    }
    Ok(HttpResponse::Ok().json(json!({ "name": "service 2" })))
}
