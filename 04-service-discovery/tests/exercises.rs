//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 4 1
//! cargo test -p step04-service-discovery --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 4 1` (from
//! solutions/04-service-discovery/hints.md). It checks what a client sees, not
//! how you wrote it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step04_service_discovery::{registry, serve};
use support::{PATIENCE, nothing_listening, register_passing, start, start_service1};
use tokio::process::{Child, Command};

mod support;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step04-service-discovery");

/// How long a service started here gets to appear in the registry: it
/// registers as soon as it listens.
const REGISTERS_WITHIN: Duration = Duration::from_secs(10);

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_an_advertised_address() {
    hints_only();
    let registry_url = start(registry::server);
    let _service2 = run_service2(&registry_url, Some("service2.internal"));
    let address = registered_service2(&registry_url).await["Service"]["Address"].clone();
    assert_eq!(
        address, "service2.internal",
        "with ADVERTISE_ADDRESS=service2.internal, service2 registered the address {address}: \
         the registry should hand out service2.internal, the address the others are to call"
    );

    let registry_url = start(registry::server);
    let _service2 = run_service2(&registry_url, None);
    let address = registered_service2(&registry_url).await["Service"]["Address"].clone();
    assert_eq!(
        address, "127.0.0.1",
        "without ADVERTISE_ADDRESS, service2 registered the address {address}: it should still \
         register the address it listens on (127.0.0.1 when that is 0.0.0.0)"
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_the_next_instance_when_one_refuses() {
    hints_only();
    let live = start(|listener| {
        serve(listener, |routes| {
            routes.default_service(actix_web::web::to(|| async {
                HttpResponse::Ok().json(json!({ "name": "live" }))
            }));
        })
    });
    let dead = nothing_listening();
    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &dead).await;
    register_passing(&registry_url, "service2", &live).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));
    for call in 1..=6 {
        let (status, body) = get(&service1_url).await;
        assert_eq!(
            (status, &body),
            (StatusCode::OK, &json!({ "name": "live" })),
            "call {call} of 6 to service1 got {status} {body}, though one of the two instances \
             of service2 registered is alive; the other refuses connections, as a killed one \
             does until its TTL runs out. A refused connection never reached the instance."
        );
    }

    let registry_url = start(registry::server);
    register_passing(&registry_url, "service2", &dead).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));
    let (status, body) = get(&service1_url).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "with only a dead instance of service2 registered, service1 answered {status} {body}: \
         after a few tries it should give up with the 502 of the last one"
    );
}

/// Runs service2 alone on a free port, registering with the registry at
/// `registry_url`, with `ADVERTISE_ADDRESS` set to `advertised` if given.
fn run_service2(registry_url: &str, advertised: Option<&str>) -> Child {
    let mut command = Command::new(PROGRAM);
    command
        .args(["service2", "--port", "0"])
        .env_remove("BIND_HOST")
        .env_remove("ADVERTISE_ADDRESS")
        .env("REGISTRY_URL", registry_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(advertised) = advertised {
        command.env("ADVERTISE_ADDRESS", advertised);
    }
    command.spawn().expect("cannot start the step's binary")
}

/// Waits until the registry at `registry_url` lists an instance of
/// service2, and returns its entry.
async fn registered_service2(registry_url: &str) -> Value {
    let url = format!("{registry_url}/v1/health/service/service2");
    let started = Instant::now();
    loop {
        let (_, entries) = get(&url).await;
        if let Some(entry) = entries.get(0) {
            return entry.clone();
        }
        assert!(
            started.elapsed() < REGISTERS_WITHIN,
            "service2 did not register within {REGISTERS_WITHIN:?}; run it yourself to see what \
             it says: `cargo run -p step04-service-discovery -- service2 --port 0`"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `url`; returns the status and the JSON body (null if none).
async fn get(url: &str) -> (StatusCode, Value) {
    let response = awc::Client::default().get(url).timeout(PATIENCE).send().await;
    let mut response = response.unwrap_or_else(|error| panic!("GET {url} failed: {error}"));
    let body = response.json().await.unwrap_or(Value::Null);
    (response.status(), body)
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
