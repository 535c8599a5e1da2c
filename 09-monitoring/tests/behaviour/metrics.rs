//! What Prometheus would scrape: the real binary, each service a process of
//! its own (as Prometheus sees them), and its `/metrics` read as text.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::process::Child;

use crate::support::binary::{free_ports, lines_until, spawn, start_step};
use crate::support::{
    PATIENCE, Sample, gateway_options, register_passing, request, scrape, start_gateway, value,
};
use step09_monitoring::{registry, service2};

/// The whole step, service1 without its random delay and circuits that open
/// for one second; the registry's and the gateway's URLs.
async fn start() -> (Child, String, String) {
    let env = [("SERVICE1_RANDOM_DELAY", "0s".into()), ("BREAKER_OPEN_FOR", "1s".into())];
    let (launcher, ports) = start_step(&env).await;
    let [registry, gateway] = [ports[0], ports[1]].map(|port| format!("http://127.0.0.1:{port}"));
    (launcher, registry, gateway)
}

/// GETs `path` from the gateway, with the key; the status it answered.
async fn get(gateway: &str, path: &str) -> StatusCode {
    match request("GET", &format!("{gateway}{path}")).send().await {
        Ok(mut response) => {
            let _ = response.body().await;
            response.status()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Scrapes `url` until `done` holds, and returns what it read.
async fn scrape_until(url: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let samples = scrape(url).await;
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{url}/metrics never showed it: {samples:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_service_counts_its_requests_by_route_pattern_method_and_status() {
    let ports = free_ports(2);
    let registry_url = format!("http://127.0.0.1:{}", ports[1]); // no registry: it only logs so
    let (_service2, mut lines) =
        spawn(&["service2", "--port", &ports[0].to_string()], &[("REGISTRY_URL", registry_url)]);
    lines_until(&mut lines, "listening on").await;
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let client = awc::Client::default();
    for path in ["/a", "/b/c", "/?fail=true"] {
        client.get(format!("{url}{path}")).send().await.unwrap();
    }
    client.post(format!("{url}/a")).send().await.unwrap();

    let samples = scrape(&url).await;
    let any = ("route", "/{any:.*}");
    let requests = |method, status| {
        value(&samples, "http_requests_total", &[any, ("method", method), ("status", status)])
    };
    assert_eq!(requests("GET", "200"), 2.0);
    assert_eq!(requests("GET", "500"), 1.0);
    assert_eq!(requests("POST", "405"), 1.0);
    // The pattern, never the path: no label holds "/a" or "/b/c".
    let routes: Vec<_> = samples.iter().filter_map(|s| s.labels.get("route")).collect();
    assert!(routes.iter().all(|r| !r.starts_with("/a") && !r.starts_with("/b")), "{routes:?}");
    // Every request timed, in the histogram's buckets.
    let timed = [any, ("method", "GET")];
    assert_eq!(value(&samples, "http_request_duration_seconds_count", &timed), 3.0);
    let under_2_5s = [any, ("method", "GET"), ("le", "2.5")];
    assert_eq!(value(&samples, "http_request_duration_seconds_bucket", &under_2_5s), 3.0);

    // The process, as the operating system sees it.
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(value(&samples, "process_open_fds", &[]) > 0.0);
    assert!(value(&samples, "process_start_time_seconds", &[]) > 1.7e9);
    assert!(samples.iter().any(|sample| sample.name == "process_cpu_seconds_total"));
}

#[actix_web::test]
async fn the_gateway_counts_proxied_calls_under_one_route_and_by_outcome() {
    let (_step, _, gateway) = start().await;
    assert_eq!(get(&gateway, "/api/service2/x").await, StatusCode::OK);
    assert_eq!(get(&gateway, "/api/service2/y/z").await, StatusCode::OK);
    assert_eq!(get(&gateway, "/api/service2/?fail=true").await, StatusCode::INTERNAL_SERVER_ERROR);

    let samples = scrape(&gateway).await;
    let proxied = ("route", "/api/{service}/{path}");
    let requests = |status| value(&samples, "http_requests_total", &[proxied, ("status", status)]);
    assert!(requests("200") >= 2.0); // and those of the start, to service1
    assert_eq!(requests("500"), 1.0);
    let calls = |outcome| {
        value(
            &samples,
            "upstream_requests_total",
            &[("upstream", "service2"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("2xx"), 2.0);
    assert_eq!(calls("5xx"), 1.0);
    let timed = [("upstream", "service2")];
    assert_eq!(value(&samples, "upstream_request_duration_seconds_count", &timed), 3.0);
    // Registry lookups are calls too.
    assert!(value(&samples, "upstream_requests_total", &[("upstream", "registry")]) >= 1.0);

    // A service's metrics are for Prometheus, not passed on to clients.
    assert_eq!(get(&gateway, "/api/service2/metrics").await, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn the_breaker_gauge_follows_the_circuit() {
    let (_step, _, gateway) = start().await;
    let state = |samples: &[Sample], state| {
        value(samples, "circuit_breaker_state", &[("upstream", "service2"), ("state", state)])
    };
    let transitions = |samples: &[Sample], to| {
        value(samples, "circuit_breaker_transitions_total", &[("upstream", "service2"), ("to", to)])
    };
    // Three failures in a row open the gateway's circuit for service2.
    for _ in 0..3 {
        assert_eq!(
            get(&gateway, "/api/service2/?fail=true").await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(get(&gateway, "/api/service2/").await, StatusCode::SERVICE_UNAVAILABLE);
    let samples = scrape(&gateway).await;
    assert_eq!((state(&samples, "open"), state(&samples, "closed")), (1.0, 0.0));
    assert_eq!(transitions(&samples, "open"), 1.0);

    // After the pause (1 s), a trial call succeeds and closes it again.
    let deadline = Instant::now() + PATIENCE;
    while get(&gateway, "/api/service2/").await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the circuit never closed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = scrape(&gateway).await;
    assert_eq!((state(&samples, "open"), state(&samples, "closed")), (0.0, 1.0));
    assert_eq!(state(&samples, "half_open"), 0.0);
    assert_eq!(transitions(&samples, "half_open"), 1.0);
    assert_eq!(transitions(&samples, "closed"), 1.0);
}

#[actix_web::test]
async fn the_registry_lists_every_service_for_prometheus_and_counts_them_by_status() {
    let (_step, registry, _) = start().await;
    // Prometheus's service discovery: every service, and the registry itself.
    let url = format!("{registry}/prometheus/targets");
    let groups: Value = awc::Client::default().get(url).send().await.unwrap().json().await.unwrap();
    let services: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["labels"]["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["registry", "gateway", "service1", "service2"]);
    assert_eq!(groups[0]["targets"][0], registry.trim_start_matches("http://"));

    let instances = |samples: &[Sample], status| {
        value(samples, "registry_instances", &[("service_name", "service2"), ("status", status)])
    };
    let samples = scrape(&registry).await;
    assert_eq!(instances(&samples, "passing"), 1.0);
    let checks = [("service_name", "service2"), ("status", "passing")];
    assert!(value(&samples, "registry_checks_total", &checks) >= 1.0);

    // A second service2, of the test's own: once it passes its check, then
    // killed, its check fails, and the registry counts it critical.
    let port = free_ports(1)[0].to_string();
    let (mut second, mut lines) = spawn(
        &["service2", "--port", &port, "--check-interval", "200ms"],
        &[("REGISTRY_URL", registry.clone())],
    );
    lines_until(&mut lines, "registered with the registry").await;
    scrape_until(&registry, |samples| instances(samples, "passing") == 2.0).await;
    second.kill().await.unwrap();
    let samples = scrape_until(&registry, |samples| instances(samples, "critical") == 1.0).await;
    assert_eq!(instances(&samples, "passing"), 1.0);
    let failed = [("service_name", "service2"), ("status", "critical")];
    assert!(value(&samples, "registry_checks_total", &failed) >= 1.0);
}

#[actix_web::test]
async fn a_circuit_leaves_the_metrics_with_its_instance() {
    let registry_url = crate::support::start(registry::server);
    let (a, b) = (crate::support::start(service2::server), crate::support::start(service2::server));
    register_passing(&registry_url, "service2", &a).await;
    register_passing(&registry_url, "service2", &b).await;
    let gateway = start_gateway(gateway_options(&registry_url));
    let instances = |samples: &[Sample]| -> BTreeSet<String> {
        let states = samples.iter().filter(|sample| sample.name == "circuit_breaker_state");
        states.map(|sample| sample.labels["instance"].clone()).collect()
    };
    // In turn, each instance is called, and has a circuit.
    for _ in 0..2 {
        assert_eq!(get(&gateway, "/api/service2/").await, StatusCode::OK);
    }
    assert_eq!(instances(&scrape(&gateway).await), BTreeSet::from([a.clone(), b.clone()]));

    // b leaves: once discovery no longer lists it, its circuit and its series go.
    let id = format!("service2-{}", b.trim_start_matches("http://"));
    let deregister = format!("{registry_url}/v1/agent/service/deregister/{id}");
    awc::Client::default().put(deregister).send().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while instances(&scrape(&gateway).await) != BTreeSet::from([a.clone()]) {
        assert!(Instant::now() < deadline, "b's circuit stayed");
        assert_eq!(get(&gateway, "/api/service2/").await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let breakers: serde_json::Value =
        request("GET", &format!("{gateway}/breakers")).send().await.unwrap().json().await.unwrap();
    assert!(breakers["service2"].get(&b).is_none(), "{breakers}");
}

#[actix_web::test]
async fn a_count_no_call_updates_goes_after_the_idle_timeout_a_circuit_stays() {
    let env = [("SERVICE1_RANDOM_DELAY", "0s".into()), ("METRICS_IDLE_TIMEOUT", "3s".into())];
    let (_step, ports) = start_step(&env).await;
    let gateway = format!("http://127.0.0.1:{}", ports[1]);
    assert_eq!(get(&gateway, "/api/service2/").await, StatusCode::OK);
    let calls = |samples: &[Sample]| {
        value(samples, "upstream_requests_total", &[("upstream", "service2"), ("outcome", "2xx")])
    };
    assert_eq!(calls(&scrape(&gateway).await), 1.0);

    // No call for 3 s: the series of service2's calls goes, as would those
    // of a service gone for good; its circuit is a state, and stays.
    let samples = scrape_until(&gateway, |samples| calls(samples) == 0.0).await;
    let name = |sample: &&Sample| sample.labels.get("upstream").is_some_and(|u| u == "service2");
    let left: BTreeSet<&str> = samples.iter().filter(name).map(|s| s.name.as_str()).collect();
    assert_eq!(left, BTreeSet::from(["circuit_breaker_state"]));
}
