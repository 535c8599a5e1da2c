//! What more than one test file of this step needs.

#![allow(dead_code)] // each test file uses some of it

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use step02_connect::service1;

/// The longest any test waits for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a server on a free port and returns its base URL.
pub fn start(server: impl FnOnce(TcpListener) -> std::io::Result<Server>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(server(listener).unwrap());
    url
}

/// A URL where nothing listens: a port free a moment ago, below the range
/// the OS hands out for port 0 (32768 and up on Linux, 49152 and up
/// elsewhere), so that no server another test starts meanwhile can get it.
pub fn nothing_listening() -> String {
    let free = (20000..30000).find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok());
    format!("http://127.0.0.1:{}", free.expect("a free port from 20000 to 29999"))
}

/// Starts service1, calling service2 at `service2_url` and giving it
/// `service2_timeout` to answer; returns service1's URL.
pub fn start_service1(service2_url: &str, service2_timeout: Duration) -> String {
    let options =
        service1::Options { port: 0, service2_url: service2_url.to_string(), service2_timeout };
    start(|listener| service1::server(listener, options))
}

pub fn header<'a, S>(response: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|value| value.to_str().ok())
}
