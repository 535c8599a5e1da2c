//! What more than one test file of this step needs.

#![allow(dead_code)] // each test file uses some of it

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use serde_json::json;
use step05_server_side_service_discovery::gateway::WORKSHOP_KEY;
use step05_server_side_service_discovery::{RegistrationOptions, service1};

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

/// Registers `url` as a passing instance of `service`, as a service does.
pub async fn register_passing(registry_url: &str, service: &str, url: &str) {
    let address: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let registration = json!({
        "Name": service,
        "ID": format!("{service}-{address}"),
        "Address": address.ip().to_string(),
        "Port": address.port(),
        "Check": { "TTL": "1m", "Status": "passing" },
    });
    let response = awc::Client::default()
        .put(format!("{registry_url}/v1/agent/service/register"))
        .send_json(&registration)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// How a service started by a test registers (or finds others).
pub fn registration(registry_url: &str) -> RegistrationOptions {
    RegistrationOptions {
        registry_url: registry_url.to_string(),
        registration_ttl: Duration::from_secs(10),
        registry_token: None,
    }
}

/// Starts service1, finding service2 in the registry at `registry_url` and
/// giving it `service2_timeout` to answer; returns service1's URL.
pub fn start_service1(registry_url: &str, service2_timeout: Duration) -> String {
    let options =
        service1::Options { port: 0, service2_timeout, registration: registration(registry_url) };
    start(|listener| service1::server(listener, options))
}

/// A request to the gateway with the workshop's key.
pub fn request(method: &str, url: &str) -> awc::ClientRequest {
    awc::Client::default()
        .request(method.parse().unwrap(), url)
        .insert_header(("authorization", format!("Bearer {WORKSHOP_KEY}")))
}

pub fn header<'a, S>(response: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|value| value.to_str().ok())
}
