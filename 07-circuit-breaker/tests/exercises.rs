//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 7 1
//! cargo test -p step07-circuit-breaker --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 7 1` (from
//! solutions/07-circuit-breaker/hints.md). It checks what a client (and the
//! gateway's log) shows, not how you wrote it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step07_circuit_breaker::{BreakerOptions, gateway, registry, service2};
use support::{
    PATIENCE, breaker_options, gateway_options, register_passing, request, start, start_gateway,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

mod support;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step07-circuit-breaker");

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_a_get_falls_back_to_the_last_answer() {
    hints_only();
    let registry_url = start(registry::server);
    let service2_url = start(service2::server);
    register_passing(&registry_url, "service2", &service2_url).await;
    // Open for long enough that no trial call comes in the middle.
    let (breaker_open_for, breaker_max_open_for) =
        (Duration::from_secs(30), Duration::from_secs(60));
    let breaker = BreakerOptions { breaker_open_for, breaker_max_open_for, ..breaker_options() };
    let gateway_url = start_gateway(gateway::Options { breaker, ..gateway_options(&registry_url) });
    let service2_root = format!("{gateway_url}/api/service2/");

    // An answer to remember, from `/` and from `/api/service2/` itself.
    assert_eq!(send("GET", &format!("{gateway_url}/")).await.status, StatusCode::OK);
    let fresh = send("GET", &service2_root).await;
    assert_eq!((fresh.status, &fresh.body), (StatusCode::OK, &json!({ "name": "service 2" })));
    for _ in 0..3 {
        let failed = send("GET", &format!("{service2_root}?fail=true")).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", failed.body);
    }

    let fallback = send("GET", &service2_root).await;
    assert_eq!(
        fallback.status,
        StatusCode::OK,
        "with service2's circuit open, GET /api/service2/ answered {} {}: it should answer \
         200 with service2's last answer, as `/` does for service2's part.",
        fallback.status,
        fallback.body
    );
    assert_eq!(
        fallback.body,
        json!({ "name": "service 2" }),
        "the fallback should be service2's last answer, as service2 gave it"
    );
    assert!(
        fallback.fallback.as_deref().is_some_and(|why| why.contains("circuit")),
        "the fallback answer has no `Fallback` header saying why it is not fresh (the circuit \
         is open), as `/` says it in its `fallback` field; it had {:?}",
        fallback.fallback
    );
    assert!(
        fallback.age.as_deref().is_some_and(|age| age.parse::<u64>().is_ok()),
        "the fallback answer should say how old it is, in whole seconds, with `Age` (the header \
         HTTP has for an answer that comes from a cache); it had {:?}",
        fallback.age
    );

    let post = send("POST", &service2_root).await;
    assert_eq!(
        post.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "POST /api/service2/ answered {} {} while the circuit is open: an answer from memory \
         would tell the client that its POST was done. Only a GET may be answered from the \
         fallback.",
        post.status,
        post.body
    );
    let elsewhere = send("GET", &format!("{service2_root}elsewhere")).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "GET /api/service2/elsewhere answered {} {} while the circuit is open, though service2 \
         was never asked for /elsewhere: an answer at / is no answer to /elsewhere",
        elsewhere.status,
        elsewhere.body
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_a_success_rate_over_a_window() {
    hints_only();
    let registry_url = start(registry::server);
    let service2_url = start(service2::server);
    register_passing(&registry_url, "service2", &service2_url).await;
    let window = Duration::from_secs(1);
    let (_gateway, gateway_url, mut log) =
        run_gateway(&registry_url, &[("BREAKER_WINDOW", "1s"), ("RUST_LOG", "info")]).await;

    // service2 fails every other call: never 3 failures in a row. The rate
    // is judged once a window has passed since the first call: ten windows
    // are plenty.
    let started = Instant::now();
    let mut calls = 0;
    loop {
        let query = if calls % 2 == 0 { "?fail=true" } else { "" };
        let answer = send("GET", &format!("{gateway_url}/api/service2/{query}")).await;
        calls += 1;
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        if answer.status == StatusCode::SERVICE_UNAVAILABLE && detail.contains("circuit") {
            break;
        }
        assert!(
            started.elapsed() < 10 * window,
            "with BREAKER_WINDOW=1s, service2 failed every other one of {calls} calls over \
             {:.1?}, and its circuit never opened. Failures in a row cannot see that; a success \
             rate over the window can.",
            started.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    let opened = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = log.recv().await {
            if line.contains("circuit for service2") && line.contains("OPEN") {
                return Some(line);
            }
        }
        None
    });
    let opened = opened.await.ok().flatten().expect("the gateway logged no OPEN line for service2");
    assert!(
        !opened.contains("in a row") && opened.contains("80%"),
        "the circuit opened, and the gateway logged: {opened}\nIt should say what opened it (fewer \
         than 80% of calls succeeding over the window), not a number of failures in a row."
    );
}

/// What the gateway answered: status, body, and the headers that mark a
/// fallback.
struct Answer {
    status: StatusCode,
    body: Value,
    fallback: Option<String>,
    age: Option<String>,
}

async fn send(method: &str, url: &str) -> Answer {
    let mut response = request(method, url).send().await.unwrap();
    let fallback = support::header(&response, "fallback").map(str::to_string);
    let age = support::header(&response, "age").map(str::to_string);
    let body = response.body().await.unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Answer { status: response.status(), body, fallback, age }
}

/// Runs the real gateway alone on a free port, with `env`, finding services
/// in the registry at `registry_url`, and waits until it answers; returns
/// it, its URL, and the lines it logs.
async fn run_gateway(
    registry_url: &str,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String, mpsc::UnboundedReceiver<String>) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gateway = Command::new(PROGRAM)
        .args(["gateway", "--port", &port.to_string(), "--registry-url", registry_url])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (sender, log) = mpsc::unbounded_channel();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    actix_web::rt::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = sender.send(line);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while awc::Client::default().get(format!("{url}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < PATIENCE, "the gateway did not answer at {url}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    (gateway, url, log)
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
