//! What more than one test file of this step needs.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;
use step05_server_side_service_discovery::RegistrationOptions;

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
