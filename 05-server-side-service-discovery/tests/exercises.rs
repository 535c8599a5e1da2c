//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 5 1
//! cargo test -p step05-server-side-service-discovery --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 5 1` (from
//! solutions/05-server-side-service-discovery/hints.md). It checks what a
//! client sees, not how you wrote it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step05_server_side_service_discovery::{registry, serve, service2};
use support::{PATIENCE, register_passing, request, start};
use tokio::process::{Child, Command};

mod support;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step05-server-side-service-discovery");

/// How long a service started here gets to be found through the gateway:
/// it registers as soon as it listens, and the gateway asks the registry
/// again within a second.
const FOUND_WITHIN: Duration = Duration::from_secs(10);

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_a_third_service_through_the_gateway() {
    hints_only();
    let help = Command::new(PROGRAM).arg("--help").output().await.unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("service3"),
        "`cargo run -p step05-server-side-service-discovery -- --help` lists no service3: the \
         launcher knows of no third service yet, so nobody can start one"
    );
    let registry_url = start(registry::server);
    let (_gateway, gateway_url) = run_gateway(&registry_url).await;
    let mut service3 = run(&["service3", "--port", "0"], &registry_url);

    let url = format!("{gateway_url}/api/service3/");
    let started = Instant::now();
    let (status, answer) = loop {
        let (status, answer) = get(request("GET", &url)).await;
        if status == StatusCode::OK || started.elapsed() > FOUND_WITHIN {
            break (status, answer);
        }
        if let Some(exited) = service3.try_wait().unwrap() {
            panic!(
                "service3 stopped ({exited}) instead of serving; run it yourself to see what it \
                 says: `cargo run -p step05-server-side-service-discovery -- service3`"
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({ "name": "service 3" })),
        "the gateway answered {status} {answer} at /api/service3/ within {FOUND_WITHIN:?} of \
         service3's start: it should answer {{\"name\":\"service 3\"}}. A 404 means that the \
         registry never heard of service3."
    );

    let (status, aggregate) = get(request("GET", &gateway_url)).await;
    let services = aggregate["services"].as_array().cloned().unwrap_or_default();
    assert!(
        services.contains(&json!({ "service": "service3", "answer": { "name": "service 3" } })),
        "the gateway's / answered {status} {aggregate}, without service3's answer: it asks \
         every registered service, so service3 needs nothing more than its registration"
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_root_remembers_the_services_while_the_registry_is_down() {
    hints_only();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let registry_url = format!("http://{}", listener.local_addr().unwrap());
    let registry = registry::server(listener).unwrap();
    let stop_registry = registry.handle();
    actix_web::rt::spawn(registry);
    register_passing(&registry_url, "service2", &start(service2::server)).await;
    let (_gateway, gateway_url) = run_gateway(&registry_url).await;
    let service2_answer = json!({ "service": "service2", "answer": { "name": "service 2" } });
    let (status, aggregate) = get(request("GET", &gateway_url)).await;
    assert_eq!(
        aggregate["services"],
        json!([service2_answer]),
        "with the registry up, / answered {status} {aggregate}: it should answer what service2 \
         says, as before the exercise"
    );

    // While the registry is up, / still lists a service registered since.
    let service4 = start(|listener| {
        serve(listener, |routes| {
            routes.default_service(actix_web::web::to(|| async {
                HttpResponse::Ok().json(json!({ "name": "service 4" }))
            }));
        })
    });
    register_passing(&registry_url, "service4", &service4).await;
    let started = Instant::now();
    loop {
        let (status, aggregate) = get(request("GET", &gateway_url)).await;
        if aggregate.to_string().contains("service 4") {
            break;
        }
        assert!(
            started.elapsed() < FOUND_WITHIN,
            "{FOUND_WITHIN:?} after service4 registered, / still answers {status} {aggregate}, \
             without it: while the registry answers, / should list what it lists now"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    stop_registry.stop(false).await;
    let (status, answer) = get(request("GET", &format!("{gateway_url}/api/service2/"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "with the registry stopped, /api/service2/ answered {status} {answer}: it should answer \
         from the instances discovery remembers, as before the exercise"
    );
    let (status, aggregate) = get(request("GET", &gateway_url)).await;
    let services = aggregate["services"].as_array().cloned().unwrap_or_default();
    assert!(
        status == StatusCode::OK && services.contains(&service2_answer),
        "with the registry stopped, /api/service2/ still answers, but / answered {status} \
         {aggregate}: it should still show service2's answer, as it did a moment before"
    );
}

/// Runs one service of the step alone with these arguments, registering
/// with (or finding others in) the registry at `registry_url`.
fn run(args: &[&str], registry_url: &str) -> Child {
    Command::new(PROGRAM)
        .args(args)
        .env_remove("BIND_HOST")
        .env("REGISTRY_URL", registry_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start the step's binary")
}

/// Runs the gateway alone on a free port, finding services in the registry
/// at `registry_url`, and waits until it answers; returns it and its URL.
async fn run_gateway(registry_url: &str) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = run(&["gateway", "--port", &port.to_string()], registry_url);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while awc::Client::default().get(&url).send().await.is_err() {
        assert!(started.elapsed() < PATIENCE, "the gateway did not answer at {url}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    (gateway, url)
}

/// Sends `request`; returns the status and the JSON body (null if none).
async fn get(request: awc::ClientRequest) -> (StatusCode, Value) {
    let mut response = request.timeout(PATIENCE).send().await.expect("the gateway answers");
    let body = response.json().await.unwrap_or(Value::Null);
    (response.status(), body)
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
