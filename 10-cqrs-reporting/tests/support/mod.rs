//! What more than one test file of this step needs.

#![allow(dead_code)] // each test file uses some of it

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step10_cqrs_reporting::gateway::{self, WORKSHOP_KEY};
use step10_cqrs_reporting::{BreakerOptions, RegistrationOptions, registry, service1};

pub mod binary;
pub mod cqrs;

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
    register(registry_url, service, url, json!({ "TTL": "1m", "Status": "passing" })).await;
}

/// Registers `url` as an instance of `service` with `check`.
pub async fn register(registry_url: &str, service: &str, url: &str, check: Value) {
    let address: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let registration = json!({
        "Name": service,
        "ID": format!("{service}-{address}"),
        "Address": address.ip().to_string(),
        "Port": address.port(),
        "Check": check,
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
        check_interval: Duration::from_secs(1),
        registry_token: None,
        advertise_address: None,
    }
}

/// Circuit breakers as the services have them, but quicker to close again.
pub fn breaker_options() -> BreakerOptions {
    BreakerOptions {
        breaker_failures: 3,
        breaker_open_for: Duration::from_secs(1),
        breaker_max_open_for: Duration::from_secs(4),
    }
}

/// Starts service1, finding service2 in the registry at `registry_url` and
/// giving it `service2_timeout` to answer; returns service1's URL.
pub fn start_service1(registry_url: &str, service2_timeout: Duration) -> String {
    let options = service1::Options {
        port: 0,
        service2_timeout,
        random_delay: Duration::ZERO,
        registration: registration(registry_url),
        breaker: breaker_options(),
    };
    start(|listener| service1::server(listener, options))
}

/// A gateway finding services in the registry at `registry_url`.
pub fn gateway_options(registry_url: &str) -> gateway::Options {
    gateway::Options {
        port: 0,
        api_key: None,
        upstream_timeout: Duration::from_millis(300),
        max_body_bytes: 64,
        registration: registration(registry_url),
        breaker: breaker_options(),
    }
}

pub fn start_gateway(options: gateway::Options) -> String {
    start(|listener| gateway::server(listener, options))
}

/// A registry where each `(service, url)` is a passing instance, and a
/// gateway finding them there; returns the gateway's URL.
pub async fn start_gateway_with(instances: &[(&str, &str)]) -> String {
    let registry_url = start(registry::server);
    for (service, url) in instances {
        register_passing(&registry_url, service, url).await;
    }
    start_gateway(gateway_options(&registry_url))
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

/// GETs `url`; returns the status, the content type and the JSON body.
pub async fn get(url: &str) -> (StatusCode, String, Value) {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    let content_type = header(&response, "content-type").unwrap_or_default().to_string();
    let body = response.json().await.unwrap();
    (response.status(), content_type, body)
}
