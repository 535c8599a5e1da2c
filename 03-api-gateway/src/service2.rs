//! service2: answers every GET, whatever the path, with its name as JSON.

use std::io;
use std::net::TcpListener;

use actix_web::HttpResponse;
use actix_web::dev::Server;
use serde_json::json;

use crate::platform;

pub const NAME: &str = "service2";

/// service2's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "SERVICE2_PORT", default_value_t = 3003)]
    pub port: u16,
}

pub fn server(listener: TcpListener) -> io::Result<Server> {
    platform::serve(listener, |routes| platform::on_every_get(routes, hello))
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "name": "service 2" }))
}
