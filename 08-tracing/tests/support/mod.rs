//! What more than one test file of this step needs.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step08_tracing::{BreakerOptions, RegistrationOptions};

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
