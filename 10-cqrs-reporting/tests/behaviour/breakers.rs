//! The circuit breakers, as a client of the gateway (and of service1) sees
//! them: failures in a row open a circuit, an open circuit answers at once
//! without calling the service, one trial call closes it again or not.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    PATIENCE, register_passing, request, start, start_gateway_with, start_service1,
};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use step10_cqrs_reporting::{registry, service2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// A stand-in for a service: answers every call with the status the test
/// sets, counts the calls that reach it, and can hold a call until told.
#[derive(Clone)]
struct Fake {
    url: String,
    status: Arc<AtomicU16>,
    calls: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Fake {
    fn start() -> Fake {
        let mut fake = Fake {
            url: String::new(),
            status: Arc::new(AtomicU16::new(200)),
            calls: Arc::new(AtomicUsize::new(0)),
            hold: Arc::new(AtomicBool::new(false)),
            arrived: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        let answering = fake.clone();
        fake.url = start(move |listener| {
            step10_cqrs_reporting::serve(listener, move |routes| {
                let fake = answering.clone();
                routes.default_service(web::to(move || {
                    let fake = fake.clone();
                    async move {
                        fake.calls.fetch_add(1, Ordering::SeqCst);
                        if fake.hold.load(Ordering::SeqCst) {
                            fake.arrived.notify_one();
                            fake.release.notified().await;
                        }
                        let status =
                            StatusCode::from_u16(fake.status.load(Ordering::SeqCst)).unwrap();
                        HttpResponse::build(status)
                            .json(json!({ "name": "fake", "status": status.as_u16() }))
                    }
                }));
            })
        });
        fake
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// GETs `path` from the gateway with the workshop key: status, Retry-After, body.
async fn call(gateway_url: &str, path: &str) -> (StatusCode, Option<String>, Value) {
    let mut response = request("GET", &format!("{gateway_url}{path}")).send().await.unwrap();
    let retry_after =
        response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = response.body().await.unwrap();
    (response.status(), retry_after, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The circuit of the one instance of `service` the gateway called.
async fn circuit(gateway_url: &str, service: &str) -> Value {
    let circuits = call(gateway_url, "/breakers").await.2[service].clone();
    let instances: Vec<&Value> =
        circuits.as_object().into_iter().flat_map(|c| c.values()).collect();
    assert_eq!(instances.len(), 1, "one instance's circuit: {circuits}");
    instances[0].clone()
}

/// Calls until the circuit has let a call through again (it half-opens on
/// the first call after its pause), and returns that call's status.
async fn call_until_let_through(gateway_url: &str, path: &str) -> StatusCode {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _, body) = call(gateway_url, path).await;
        let rejected = status == StatusCode::SERVICE_UNAVAILABLE
            && body["detail"].as_str().is_some_and(|d| d.contains("circuit"));
        if !rejected {
            return status;
        }
        assert!(Instant::now() < deadline, "the circuit never let a call through");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn failures_in_a_row_open_the_circuit_and_then_no_call_is_made() {
    let fake = Fake::start();
    fake.answer(500);
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;

    for _ in 0..3 {
        assert_eq!(call(&gateway_url, "/api/service2/").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "open");
    for _ in 0..5 {
        let (status, retry_after, problem) = call(&gateway_url, "/api/service2/").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"), "at most 1 s, rounded up");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("the circuit for service2 at {} is open", fake.url))
        );
    }
    assert_eq!(fake.calls(), 3, "no call reaches the service while the circuit is open");
    assert_eq!(circuit(&gateway_url, "service2").await["rejected_calls"], 5);
}

#[actix_web::test]
async fn answers_4xx_are_the_callers_fault_and_do_not_count() {
    let fake = Fake::start();
    fake.answer(404);
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;
    for _ in 0..6 {
        assert_eq!(call(&gateway_url, "/api/service2/nothing").await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "closed");
    assert_eq!(fake.calls(), 6);
}

#[actix_web::test]
async fn timeouts_count_as_failures() {
    // Accepts connections, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let gateway_url = start_gateway_with(&[("service2", &silent_url)]).await;
    for _ in 0..3 {
        assert_eq!(call(&gateway_url, "/api/service2/").await.0, StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "open");
}

#[actix_web::test]
async fn a_successful_trial_closes_the_circuit_and_a_failed_one_opens_it_longer() {
    let fake = Fake::start();
    fake.answer(500);
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;
    for _ in 0..3 {
        call(&gateway_url, "/api/service2/").await;
    }

    // The trial fails: open again, for twice as long (2 s).
    let status = call_until_let_through(&gateway_url, "/api/service2/").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fake.calls(), 4, "exactly one trial call");
    let state = circuit(&gateway_url, "service2").await;
    assert_eq!(state["state"], "open");
    assert_eq!(state["retry_after_seconds"], 2);

    // The service recovers: the next trial closes the circuit.
    fake.answer(200);
    assert_eq!(call_until_let_through(&gateway_url, "/api/service2/").await, StatusCode::OK);
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "closed");
    assert_eq!(call(&gateway_url, "/api/service2/").await.0, StatusCode::OK);
}

#[actix_web::test]
async fn while_half_open_only_one_trial_call_goes_through() {
    let fake = Fake::start();
    fake.answer(500);
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;
    for _ in 0..3 {
        call(&gateway_url, "/api/service2/").await;
    }
    fake.answer(200);
    fake.hold.store(true, Ordering::SeqCst);

    // Wait out the pause: the first call then is the trial, which the
    // service holds until the test releases it.
    let deadline = Instant::now() + PATIENCE;
    let trial = loop {
        let gateway_url = gateway_url.clone();
        let mut trial =
            actix_web::rt::spawn(async move { call(&gateway_url, "/api/service2/").await });
        tokio::select! {
            _ = fake.arrived.notified() => break trial,
            rejected = &mut trial => assert_eq!(rejected.unwrap().0, StatusCode::SERVICE_UNAVAILABLE),
        }
        assert!(Instant::now() < deadline, "the circuit never half-opened");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, _, problem) = call(&gateway_url, "/api/service2/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a second call while the trial runs");
    assert!(problem["detail"].as_str().unwrap().contains("circuit"));

    fake.hold.store(false, Ordering::SeqCst);
    fake.release.notify_one();
    assert_eq!(trial.await.unwrap().0, StatusCode::OK);
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "closed");
    assert_eq!(fake.calls(), 4);
}

#[actix_web::test]
async fn root_falls_back_to_the_last_answer_and_says_so() {
    let fake = Fake::start();
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;
    let (status, _, fresh) = call(&gateway_url, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fresh["services"][0],
        json!({ "service": "service2", "answer": { "name": "fake", "status": 200 } })
    );

    fake.answer(500);
    for _ in 0..3 {
        call(&gateway_url, "/api/service2/").await;
    }
    let (status, _, aggregate) = call(&gateway_url, "/").await;
    assert_eq!(status, StatusCode::OK);
    let part = &aggregate["services"][0];
    assert_eq!(part["answer"], json!({ "name": "fake", "status": 200 }), "the last answer");
    let why = part["fallback"].as_str().unwrap();
    assert!(why.starts_with("the circuit for service2 at "), "{why}");
    assert!(why.contains("this is its last answer, from "), "{why}");
}

#[actix_web::test]
async fn an_instance_whose_circuit_is_open_is_passed_over_for_the_others() {
    let broken = Fake::start();
    broken.answer(500);
    let healthy = Fake::start();
    let gateway_url =
        start_gateway_with(&[("service2", &broken.url), ("service2", &healthy.url)]).await;
    // In turn: the broken instance fails three times, and its circuit opens.
    let deadline = Instant::now() + PATIENCE;
    while broken.calls() < 3 {
        call(&gateway_url, "/api/service2/").await;
        assert!(Instant::now() < deadline, "the broken instance was never called");
    }
    let circuits = call(&gateway_url, "/breakers").await.2["service2"].clone();
    assert_eq!(circuits[&broken.url]["state"], "open", "{circuits}");
    assert_eq!(circuits[&healthy.url]["state"], "closed", "{circuits}");

    // From then on, the healthy instance takes every call.
    for _ in 0..6 {
        assert_eq!(call(&gateway_url, "/api/service2/").await.0, StatusCode::OK);
    }
    assert_eq!(broken.calls(), 3, "no call goes to the instance whose circuit is open");
}

#[actix_web::test]
async fn a_client_that_sends_its_body_too_slowly_gets_408_and_opens_no_circuit() {
    let fake = Fake::start();
    let gateway_url = start_gateway_with(&[("service2", &fake.url)]).await;
    let address = gateway_url.trim_start_matches("http://");
    // Three clients announce a body and stop after its first byte.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = "POST /api/service2/ HTTP/1.1\r\nHost: gateway\r\n\
                    Authorization: Bearer workshop-key\r\nContent-Length: 10\r\n\r\n{";
        client.write_all(head.as_bytes()).await.unwrap();
        clients.push(client);
    }
    for mut client in clients {
        let mut answer = String::new();
        let read = client.read_to_string(&mut answer);
        actix_web::rt::time::timeout(PATIENCE, read).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
    }
    assert_eq!(circuit(&gateway_url, "service2").await["state"], "closed");
    assert_eq!(call(&gateway_url, "/api/service2/").await.0, StatusCode::OK);
}

#[actix_web::test]
async fn service2_fails_on_purpose_and_trips_service1s_circuit() {
    let service2_url = start(service2::server);
    let mut response =
        awc::Client::default().get(format!("{service2_url}/?fail=true")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "failing on purpose (?fail=true)");

    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &service2_url).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(1));
    let client = awc::Client::default();
    // Each request makes two calls to service2, and each call counts: the
    // third failure in a row, in the second request, opens the circuit.
    for _ in 0..2 {
        let response = client.get(format!("{service1_url}/?fail=true")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
    let response = client.get(format!("{service1_url}/")).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "open: even a good call fails fast"
    );
    let states: Value =
        client.get(format!("{service1_url}/breakers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(states["service2"][&service2_url]["state"], "open");
}
