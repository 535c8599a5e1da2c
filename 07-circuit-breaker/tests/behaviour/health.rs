//! Every service's `/healthz`, and the registry's HTTP checks that read it.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    PATIENCE, gateway_options, get, nothing_listening, register, register_passing, request, start,
    start_gateway, start_service1,
};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use step07_circuit_breaker::{registry, service2};

/// An instance whose `/healthz` answers whatever status the test sets.
struct Switchable {
    url: String,
    status: Arc<AtomicU16>,
}

impl Switchable {
    fn start() -> Switchable {
        let status = Arc::new(AtomicU16::new(200));
        let answer = status.clone();
        let url = start(move |listener| {
            step07_circuit_breaker::serve(listener, move |routes| {
                let answer = answer.clone();
                routes.default_service(web::to(move || {
                    let code = StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap();
                    async move { HttpResponse::build(code).body(format!("answering {code}")) }
                }));
            })
        });
        Switchable { url, status }
    }

    fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }
}

/// Registers `url` as an instance of `service` with an HTTP check on its
/// `/healthz` every 100 ms, as the services register themselves.
async fn register_checked(registry_url: &str, service: &str, url: &str) {
    let check =
        json!({ "HTTP": format!("{url}/healthz"), "Interval": "100ms", "Timeout": "300ms" });
    register(registry_url, service, url, check).await;
}

/// Waits until the registry reports `status` for the check of the
/// instance `id`, once it has run (a new check is critical, with no
/// output, until then), and returns the check.
async fn wait_for_check(registry_url: &str, service: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, _, entries) = get(&format!("{registry_url}/v1/health/service/{service}")).await;
        let entry = entries.as_array().unwrap().iter().find(|e| e["Service"]["ID"] == id).cloned();
        let check = entry.map(|entry| entry["Checks"][0].clone()).unwrap_or_default();
        if check["Status"] == status && check["Output"] != "" {
            return check;
        }
        assert!(Instant::now() < deadline, "{id} never became {status}; last: {check}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_service_with_nothing_wrong_passes() {
    let service2_url = start(service2::server);
    let (status, content_type, health) = get(&format!("{service2_url}/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/health+json");
    assert_eq!(health, json!({ "status": "pass", "checks": {} }));
}

#[actix_web::test]
async fn health_set_by_hand_fails_or_warns_until_cleared() {
    let service2_url = start(service2::server);
    let override_url = format!("{service2_url}/healthz/override");
    let client = awc::Client::default();

    let set = client.put(&override_url).send_body("fail").await.unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let (status, _, health) = get(&format!("{service2_url}/healthz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["status"], "fail");
    assert_eq!(health["checks"]["override"][0]["status"], "fail");

    client.put(&override_url).send_body("warn").await.unwrap();
    let (status, _, health) = get(&format!("{service2_url}/healthz")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(health["status"], "warn");

    let mut bad = client.put(&override_url).send_body("sick").await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let problem: Value = bad.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().starts_with("send fail or warn"));

    let cleared = client.delete(&override_url).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&format!("{service2_url}/healthz")).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn service1_with_service2_down_is_degraded_not_failed() {
    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &nothing_listening()).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));

    let (status, _, health) = get(&format!("{service1_url}/healthz")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(health["status"], "warn");
    let check = &health["checks"]["service2:reachability"][0];
    assert_eq!(check["status"], "warn");
    assert!(check["output"].as_str().unwrap().contains("refused the connection"), "{check}");
    assert_eq!(check["observedUnit"], "ms");
    assert!(check["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(health["checks"]["registry:reachability"][0]["status"], "pass");
}

#[actix_web::test]
async fn a_hung_dependency_cannot_hang_the_health_endpoint() {
    // service2 accepts the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &silent_url).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));

    let healthz = format!("{service1_url}/healthz");
    let answered = actix_web::rt::time::timeout(PATIENCE, get(&healthz)).await;
    let (status, _, health) = answered.expect("/healthz answered");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let check = &health["checks"]["service2:reachability"][0];
    assert_eq!(check["output"], "no answer within 1s");
    assert_eq!(health["checks"]["registry:reachability"][0]["status"], "pass");
}

#[actix_web::test]
async fn without_a_registry_service1_and_the_gateway_warn() {
    let registry_url = nothing_listening();
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));
    let (status, _, health) = get(&format!("{service1_url}/healthz")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let check = &health["checks"]["registry:reachability"][0];
    assert_eq!(check["status"], "warn");
    assert!(check["output"].as_str().unwrap().contains("refused the connection"), "{check}");

    let gateway_url = start_gateway(gateway_options(&registry_url));
    // No API key: health is for the registry and operators.
    let (status, _, health) = get(&format!("{gateway_url}/healthz")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(health["checks"]["registry:reachability"][0]["status"], "warn");
}

#[actix_web::test]
async fn the_gateway_does_not_pass_on_calls_to_health_endpoints() {
    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &start(service2::server)).await;
    let gateway_url = start_gateway(gateway_options(&registry_url));
    let response = request("PUT", &format!("{gateway_url}/api/service2/healthz/override"))
        .send_body("fail")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn the_registry_checks_instances_and_records_what_they_answered() {
    let registry_url = start(registry::server);
    let instance = Switchable::start();
    register_checked(&registry_url, "service2", &instance.url).await;
    let id = format!("service2-{}", instance.url.trim_start_matches("http://"));
    let healthz = format!("{}/healthz", instance.url);

    let check = wait_for_check(&registry_url, "service2", &id, "passing").await;
    assert_eq!(check["Type"], "http");
    assert_eq!(check["Output"], format!("HTTP GET {healthz}: 200 OK Output: answering 200 OK"));

    instance.answer(429);
    wait_for_check(&registry_url, "service2", &id, "warning").await;
    instance.answer(503);
    let check = wait_for_check(&registry_url, "service2", &id, "critical").await;
    assert_eq!(
        check["Output"],
        format!(
            "HTTP GET {healthz}: 503 Service Unavailable Output: answering 503 Service Unavailable"
        )
    );
    instance.answer(200);
    wait_for_check(&registry_url, "service2", &id, "passing").await;

    // An HTTP check takes no reports: the registry runs it.
    let pass = awc::Client::default()
        .put(format!("{registry_url}/v1/agent/check/pass/service:{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(pass.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[actix_web::test]
async fn an_instance_that_hangs_or_is_gone_is_critical() {
    let registry_url = start(registry::server);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let gone_url = nothing_listening();
    register_checked(&registry_url, "service2", &silent_url).await;
    register_checked(&registry_url, "service2", &gone_url).await;

    let hung_id = format!("service2-{}", silent_url.trim_start_matches("http://"));
    let check = wait_for_check(&registry_url, "service2", &hung_id, "critical").await;
    assert_eq!(check["Output"], format!("HTTP GET {silent_url}/healthz: no answer within 300ms"));

    let gone_id = format!("service2-{}", gone_url.trim_start_matches("http://"));
    let check = wait_for_check(&registry_url, "service2", &gone_id, "critical").await;
    assert!(
        check["Output"].as_str().unwrap().starts_with(&format!("HTTP GET {gone_url}/healthz: "))
    );
}

#[actix_web::test]
async fn an_instance_critical_for_too_long_is_deregistered() {
    let registry_url = start(registry::server);
    let gone_url = nothing_listening();
    let check = json!({
        "HTTP": format!("{gone_url}/healthz"),
        "Interval": "100ms",
        "DeregisterCriticalServiceAfter": "300ms",
    });
    register(&registry_url, "service2", &gone_url, check).await;
    let deadline = Instant::now() + PATIENCE;
    while get(&format!("{registry_url}/v1/catalog/services")).await.2 != json!({}) {
        assert!(Instant::now() < deadline, "never deregistered");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn the_gateway_routes_around_an_unhealthy_instance_and_back() {
    let registry_url = start(registry::server);
    let (healthy, sick) = (Switchable::start(), Switchable::start());
    register_checked(&registry_url, "service2", &healthy.url).await;
    register_checked(&registry_url, "service2", &sick.url).await;
    let sick_id = format!("service2-{}", sick.url.trim_start_matches("http://"));
    wait_for_check(&registry_url, "service2", &sick_id, "passing").await;
    let gateway_url = start_gateway(gateway_options(&registry_url));
    // The stand-ins answer every path with their status; "/x" tells us
    // which one answered through the gateway, by its status.
    let call = || async {
        request("GET", &format!("{gateway_url}/api/service2/x")).send().await.unwrap().status()
    };

    sick.answer(503);
    wait_for_check(&registry_url, "service2", &sick_id, "critical").await;
    // What the gateway remembered may still send one call there; then
    // every call goes to the healthy instance.
    let deadline = Instant::now() + PATIENCE;
    let mut ok_in_a_row = 0;
    while ok_in_a_row < 6 {
        assert!(Instant::now() < deadline, "calls kept reaching the critical instance");
        ok_in_a_row = if call().await == StatusCode::OK { ok_in_a_row + 1 } else { 0 };
    }

    // A warning (degraded) instance stays in rotation: no cascade.
    sick.answer(429);
    wait_for_check(&registry_url, "service2", &sick_id, "warning").await;
    let deadline = Instant::now() + PATIENCE;
    while call().await != StatusCode::TOO_MANY_REQUESTS {
        assert!(Instant::now() < deadline, "the warning instance never got traffic again");
    }
}
