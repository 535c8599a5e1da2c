//! service1: answers every GET by asking service2 and passing its answer
//! on. One service calling another over HTTP is the simplest way services
//! work together, and it brings the first question of this workshop: what
//! to do when the other service is down, slow or broken.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};

use crate::Upstream;
use crate::platform::{self, Problem};

pub const NAME: &str = "service1";

/// service1's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "SERVICE1_PORT", default_value_t = 3002)]
    pub port: u16,

    /// Where service2 answers
    #[arg(long, env = "SERVICE2_URL", default_value = "http://127.0.0.1:3003", value_parser = platform::http_url)]
    pub service2_url: String,

    /// How long a call to service2 may take ("2s", "500ms")
    #[arg(long, env = "SERVICE2_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub service2_timeout: Duration,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let service2 = Upstream::new("service2", options.service2_url, options.service2_timeout);
    platform::serve(listener, move |routes| {
        routes
            .app_data(web::Data::new(crate::http_client()))
            .app_data(web::Data::new(service2.clone()));
        platform::on_every_get(routes, hello);
    })
}

async fn hello(
    client: web::Data<awc::Client>,
    service2: web::Data<Upstream>,
) -> Result<HttpResponse, Problem> {
    let answer = service2.get_json(&client, "/").await?;
    Ok(HttpResponse::Ok().json(answer))
}
