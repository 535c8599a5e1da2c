//! What more than one test file of this step needs.

#![allow(dead_code)] // each test file uses some of it

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;

/// The longest any test waits for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a server on a free port and returns its base URL.
pub fn start(server: impl FnOnce(TcpListener) -> std::io::Result<Server>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(server(listener).unwrap());
    url
}

pub fn header<'a, S>(response: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|value| value.to_str().ok())
}
