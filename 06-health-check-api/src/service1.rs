//! service1: answers every GET by asking service2 and passing its answer
//! on. It does not know where service2 is: it asks the registry for the
//! instances of service2 that pass their checks, and calls them in turn
//! (client-side discovery). It registers itself too, so that the gateway
//! can find it.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};

use crate::platform::{self, Problem};
use crate::{DependencyCheck, Discovery, Health, HealthOverride, RegistrationOptions};

pub const NAME: &str = "service1";

/// service1's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "SERVICE1_PORT", default_value_t = 3002)]
    pub port: u16,

    /// How long a call to service2 may take ("2s", "500ms")
    #[arg(long, env = "SERVICE2_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub service2_timeout: Duration,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    // One Discovery for all workers, so that they share what it remembers.
    let registry_url = options.registration.registry_url;
    let discovery = web::Data::new(Discovery::new(registry_url, options.service2_timeout));
    platform::serve(listener, move |routes| {
        routes.app_data(web::Data::new(crate::http_client())).app_data(discovery.clone());
        routes.route("/healthz", web::get().to(healthz));
        platform::on_every_get(routes, hello);
    })
}

async fn hello(
    client: web::Data<awc::Client>,
    discovery: web::Data<Discovery>,
) -> Result<HttpResponse, Problem> {
    let service2 = discovery.find(&client, "service2").await?;
    let answer = service2.get_json(&client, "/").await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// service1 needs service2 and the registry, but with either down it is
/// degraded (warn), not dead: taking service1 out of rotation would not
/// bring service2 back, and would fail the callers of service1 too.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    client: web::Data<awc::Client>,
    discovery: web::Data<Discovery>,
) -> HttpResponse {
    let checks = vec![
        DependencyCheck::new(
            "service2:reachability",
            Health::Warn,
            discovery.check_service(&client, "service2"),
        ),
        DependencyCheck::new(
            "registry:reachability",
            Health::Warn,
            discovery.check_registry(&client),
        ),
    ];
    crate::health_report(&overridden, checks).await
}
