//! service1: answers every GET by asking service2 and passing its answer
//! on. It does not know where service2 is: it asks the registry for the
//! instances of service2 that pass their checks, and calls them in turn
//! (client-side discovery).

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};

use crate::Discovery;
use crate::platform::{self, Problem};

pub const NAME: &str = "service1";

/// service1's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "SERVICE1_PORT", default_value_t = 3002)]
    pub port: u16,

    /// Where the service registry answers
    #[arg(long, env = "REGISTRY_URL", default_value = crate::REGISTRY_URL, value_parser = platform::http_url)]
    pub registry_url: String,

    /// How long a call to service2 may take ("2s", "500ms")
    #[arg(long, env = "SERVICE2_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub service2_timeout: Duration,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    // One Discovery for all workers, so that they share what it remembers.
    let discovery = web::Data::new(Discovery::new(options.registry_url, options.service2_timeout));
    platform::serve(listener, move |routes| {
        routes.app_data(web::Data::new(crate::http_client())).app_data(discovery.clone());
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
