//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 6 1
//! cargo test -p step06-health-check-api --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 6 1` (from
//! solutions/06-health-check-api/hints.md). It checks what a client (and the
//! registry) sees, not how you wrote it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step06_health_check_api::{registry, service2};
use support::{
    PATIENCE, gateway_options, get, nothing_listening, register_passing, request, start,
    start_gateway, start_service1,
};
use tokio::process::{Child, Command};

mod support;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step06-health-check-api");

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_a_maintenance_file_takes_service2_out_of_rotation() {
    hints_only();
    let registry_url = start(registry::server);
    let folder = Folder::new();
    let (_service2, url) = run_service2_in(&folder.0, &registry_url).await;
    let id = format!("service2-{}", url.trim_start_matches("http://").replace(':', "-"));
    let healthz = format!("{url}/healthz");

    let (status, _, health) = get(&healthz).await;
    assert_eq!(
        (status, &health["status"]),
        (StatusCode::OK, &json!("pass")),
        "without a maintenance file, service2's /healthz answered {status} {health}: it should \
         pass, as before"
    );
    wait_for_registry(&registry_url, &id, "passing").await;

    std::fs::write(folder.0.join("maintenance"), "").unwrap();
    let (status, _, health) = get(&healthz).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "with a file named maintenance in the folder service2 runs in, its /healthz answered \
         {status} {health}: it should answer 503, so that the registry takes it out of \
         rotation"
    );
    let failing = health["checks"].as_object().into_iter().flatten().find(|(name, checks)| {
        *name != "override" && checks[0]["status"] == "fail" && checks[0]["output"] != ""
    });
    assert!(
        failing.is_some(),
        "service2 answered 503 but its health document names no failing check with an output: \
         {health}. The document should say which check failed, and why, for whoever reads it \
         (the registry's dashboard shows it)."
    );
    let check = wait_for_registry(&registry_url, &id, "critical").await;
    assert!(
        check["Output"].as_str().is_some_and(|output| output.contains("503")),
        "the registry's check of service2 is critical, but not because /healthz answered 503: \
         {check}"
    );

    std::fs::remove_file(folder.0.join("maintenance")).unwrap();
    let (status, _, health) = get(&healthz).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the maintenance file is gone, but service2's /healthz still answers {status} {health}: \
         look for the file at every check, not once at start"
    );
    wait_for_registry(&registry_url, &id, "passing").await;
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_livez_says_alive_whatever_the_dependencies() {
    hints_only();
    // service1 with neither the registry nor service2: degraded (warn).
    let service1_url = start_service1(&nothing_listening(), Duration::from_millis(300));
    assert_eq!(get(&format!("{service1_url}/healthz")).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_live(&service1_url, "service1 (its registry and service2 down)").await;

    // Set by hand to fail: out of rotation, but nothing a restart would cure.
    let override_url = format!("{service1_url}/healthz/override");
    awc::Client::default().put(&override_url).send_body("fail").await.unwrap();
    assert_eq!(get(&format!("{service1_url}/healthz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_live(&service1_url, "service1 (its health set by hand to fail)").await;

    let registry_url = start(registry::server);
    let service2_url = start(service2::server);
    register_passing(&registry_url, "service2", &service2_url).await;
    let gateway_url = start_gateway(gateway_options(&registry_url));
    assert_live(&service2_url, "service2").await;
    assert_live(&gateway_url, "the gateway (asked without an API key, as a probe asks)").await;
    assert_live(&registry_url, "the registry").await;

    let mut passed_on =
        request("GET", &format!("{gateway_url}/api/service2/livez")).send().await.unwrap();
    let body = passed_on.body().await.unwrap();
    assert_eq!(
        passed_on.status(),
        StatusCode::NOT_FOUND,
        "the gateway passed GET /api/service2/livez on to service2, which answered {}. A probe's \
         endpoint is for the platform, not for the gateway's clients: it should be a 404, as \
         /api/service2/healthz is.",
        String::from_utf8_lossy(&body)
    );
}

/// Asserts that `url` answers `GET /livez` with 200 and a health document
/// that passes.
async fn assert_live(url: &str, who: &str) {
    let mut response = awc::Client::default().get(format!("{url}/livez")).send().await.unwrap();
    let status = response.status();
    let content_type = support::header(&response, "content-type").unwrap_or_default().to_string();
    let body = response.body().await.unwrap();
    let health: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert!(
        status == StatusCode::OK && health["status"] == "pass",
        "GET /livez on {who} answered {status} {}: it should answer 200 \
         {{\"status\":\"pass\"}} for as long as the process can answer at all, whatever its \
         dependencies or the override say.",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        content_type, "application/health+json",
        "/livez on {who} answers a health document: say so in its content type, as /healthz does"
    );
}

/// Runs the real service2 alone, in `folder`, on a free port, registered
/// with the registry at `registry_url` and checked by it every 100 ms, and
/// waits until it answers; returns it and its URL.
async fn run_service2_in(folder: &PathBuf, registry_url: &str) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port = port.to_string();
    let args = ["service2", "--port", &port, "--registry-url", registry_url];
    let child = Command::new(PROGRAM)
        .args(args)
        .args(["--check-interval", "100ms"])
        .current_dir(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while awc::Client::default().get(format!("{url}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < PATIENCE, "service2 did not answer at {url}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

/// Waits until the registry's check of the instance `id` is `status`, once
/// it has run (it has an output then), and returns the check.
async fn wait_for_registry(registry_url: &str, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, _, entries) = get(&format!("{registry_url}/v1/health/service/service2")).await;
        let entry = entries.as_array().into_iter().flatten().find(|e| e["Service"]["ID"] == id);
        let check = entry.map(|entry| entry["Checks"][0].clone()).unwrap_or_default();
        if check["Status"] == status && check["Output"] != "" {
            return check;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the registry never saw service2 ({id}) as {status}; its check: {check}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A folder of its own for a service to run in, removed afterwards.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Folder {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let name = format!("step06-exercise-{}-{port}", std::process::id());
        let folder = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        Folder(folder)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
