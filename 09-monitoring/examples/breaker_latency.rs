//! How long a call through the gateway takes when the service answers,
//! and when an open circuit answers for it.
//!
//! cargo run --release -p step09-monitoring --example breaker_latency
//!
//! Everything runs in this process, on 127.0.0.1 and free ports: a
//! registry, service2, a stand-in for a broken service, and the gateway.
//! The calls are made one after another, so the numbers are latencies,
//! not throughput.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::{HttpResponse, web};
use serde_json::json;
use step09_monitoring::{BreakerOptions, RegistrationOptions, gateway, registry, service2};

const CALLS: usize = 5000;

fn start(server: impl FnOnce(TcpListener) -> std::io::Result<Server>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(server(listener).unwrap());
    url
}

async fn register(client: &awc::Client, registry_url: &str, service: &str, url: &str) {
    let address: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let registration = json!({
        "Name": service, "ID": service, "Address": address.ip().to_string(), "Port": address.port(),
        "Check": { "TTL": "1h", "Status": "passing" },
    });
    let url = format!("{registry_url}/v1/agent/service/register");
    client.put(url).send_json(&registration).await.unwrap();
}

/// Calls `url` `CALLS` times, one after another; the latencies, sorted.
async fn latencies(client: &awc::Client, url: &str, expected: u16) -> Vec<Duration> {
    let mut took = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let mut response = client.get(url).send().await.unwrap();
        response.body().await.unwrap();
        took.push(started.elapsed());
        assert_eq!(response.status().as_u16(), expected);
    }
    took.sort();
    took
}

fn report(what: &str, took: &[Duration]) {
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!("| {what} | {CALLS} | {:.0} | {:.0} | {:.0} |", at(0.5), at(0.9), at(0.99));
}

#[actix_web::main]
async fn main() {
    let registry_url = start(registry::server);
    let service2_url = start(service2::server);
    let broken_url = start(|listener| {
        step09_monitoring::serve(listener, |routes| {
            routes.default_service(web::to(HttpResponse::InternalServerError));
        })
    });
    let client = awc::Client::default();
    register(&client, &registry_url, "service2", &service2_url).await;
    register(&client, &registry_url, "broken", &broken_url).await;
    let gateway_url = start(|listener| {
        let options = gateway::Options {
            port: 0,
            api_key: Some("bench".to_string()),
            upstream_timeout: Duration::from_secs(2),
            max_body_bytes: 1024,
            registration: RegistrationOptions {
                registry_url: registry_url.clone(),
                check_interval: Duration::from_secs(60),
                registry_token: None,
            },
            breaker: BreakerOptions {
                breaker_failures: 3,
                breaker_open_for: Duration::from_secs(3600),
                breaker_max_open_for: Duration::from_secs(3600),
            },
        };
        gateway::server(listener, options)
    });
    let client =
        awc::Client::builder().add_default_header(("authorization", "Bearer bench")).finish();
    // Trip the broken service's circuit, and warm up the healthy path.
    for _ in 0..3 {
        client.get(format!("{gateway_url}/api/broken/")).send().await.unwrap();
    }
    latencies(&client, &format!("{gateway_url}/api/service2/"), 200).await;

    let healthy = latencies(&client, &format!("{gateway_url}/api/service2/"), 200).await;
    let open = latencies(&client, &format!("{gateway_url}/api/broken/"), 503).await;
    println!("| call through the gateway | calls | p50 µs | p90 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");
    report("to a healthy service2", &healthy);
    report("answered by an open circuit", &open);
}
