//! service1: answers every GET by asking service2 for two things at once
//! and passing both answers on. It does not know where service2 is: it
//! asks the registry for the instances of service2 that pass their checks,
//! and calls them in turn (client-side discovery). It registers itself
//! too, so that the gateway can find it. Its calls to service2 go through
//! a circuit breaker.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::join;
use serde_json::json;

use crate::platform::{self, Problem};
use crate::{
    BreakerOptions, Breakers, DependencyCheck, Discovery, Health, HealthOverride,
    RegistrationOptions,
};

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

    /// Wait up to this long, at random, before answering ("0s": never), so
    /// that the latency graphs have a shape, as a real service's would
    #[arg(long, env = "SERVICE1_RANDOM_DELAY", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub random_delay: Duration,

    #[command(flatten)]
    pub registration: RegistrationOptions,

    #[command(flatten)]
    pub breaker: BreakerOptions,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    // One Discovery for all workers, so that they share what it remembers.
    let registry_url = options.registration.registry_url;
    let breakers = web::Data::new(Breakers::new(options.breaker));
    let discovery = Discovery::new(registry_url, options.service2_timeout);
    let discovery = web::Data::new(discovery.with_breakers(breakers.clone()));
    let random_delay = web::Data::new(RandomDelay(options.random_delay));
    platform::serve(listener, move |routes| {
        routes.app_data(web::Data::new(crate::http_client())).app_data(discovery.clone());
        routes.app_data(breakers.clone()).app_data(random_delay.clone());
        routes.route("/healthz", web::get().to(healthz));
        routes.route("/breakers", web::get().to(crate::breaker_states));
        platform::on_every_get(routes, hello);
    })
}

/// The longest service1 waits before answering.
struct RandomDelay(Duration);

/// Asks service2 for two things at once, as a page made of two parts from
/// another service would. In the trace, the two calls are siblings that
/// overlap in time: the request takes as long as the slower, not the sum.
async fn hello(
    request: HttpRequest,
    client: web::Data<awc::Client>,
    discovery: web::Data<Discovery>,
    random_delay: web::Data<RandomDelay>,
) -> Result<HttpResponse, Problem> {
    // Some work that takes a while: from 0 to `random_delay`, evenly spread.
    let longest = random_delay.0.as_micros() as u64;
    if longest > 0 {
        actix_web::rt::time::sleep(Duration::from_micros(fastrand::u64(0..=longest))).await;
    }
    // An instance whose circuit lets calls through; while every instance's
    // circuit is open, answer at once: no call. Both calls go to that
    // instance, through its circuit.
    let service2 = discovery.find(&client, "service2").await?;
    // The query string goes on to service2, so that ?fail=true reaches it.
    let query = match request.query_string() {
        "" => String::new(),
        query => format!("?{query}"),
    };
    let (first, second) = join(
        service2.get_json(&client, &format!("/first{query}")),
        service2.get_json(&client, &format!("/second{query}")),
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({ "first": first?, "second": second? })))
}

/// service1 needs service2 and the registry, but with either down it is
/// degraded (warn), not dead: taking service1 out of rotation would not
/// bring service2 back, and would fail the callers of service1 too.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    client: web::Data<awc::Client>,
    discovery: web::Data<Discovery>,
    breakers: web::Data<Breakers>,
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
        DependencyCheck::new("circuits", Health::Warn, async { breakers.check() }),
    ];
    crate::health_report(&overridden, checks).await
}
