//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 1 1
//! cargo test -p step01-starter --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 1 1` (from
//! solutions/01-starter/hints.md). It checks what a client sees, not how you
//! wrote it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::PATIENCE;
use tokio::process::{Child, Command};

mod support;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step01-starter");

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_a_third_service() {
    hints_only();
    let help = Command::new(PROGRAM).arg("--help").output().await.unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("service3"),
        "`cargo run -p step01-starter -- --help` lists no service3: the launcher knows of no \
         third service yet, so nobody can start one"
    );
    let (mut service3, url) = run_alone("service3", &[]).await;
    let answer = get_json(&url).await;
    let _ = service3.kill().await;
    assert_eq!(
        answer,
        json!({ "name": "service 3" }),
        "service3 answered {answer} on its port: it should answer {{\"name\":\"service 3\"}}, \
         as service1 and service2 answer their names"
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_a_name_from_an_option() {
    hints_only();
    let (mut named, url) = run_alone("service2", &[("SERVICE2_NAME", "blue")]).await;
    let answer = get_json(&url).await;
    let _ = named.kill().await;
    assert_eq!(
        answer,
        json!({ "name": "blue" }),
        "with SERVICE2_NAME=blue in its environment, service2 answered {answer}: it should \
         answer {{\"name\":\"blue\"}}, the name it was given"
    );
    let (mut plain, url) = run_alone("service2", &[]).await;
    let answer = get_json(&url).await;
    let _ = plain.kill().await;
    assert_eq!(
        answer,
        json!({ "name": "service 2" }),
        "without SERVICE2_NAME, service2 answered {answer}: the default should stay \"service 2\""
    );
}

/// Runs one service of the step alone on a free port, as
/// `cargo run -p step01-starter -- <service> --port <N>` does, and waits
/// until it answers; returns it and its URL.
async fn run_alone(service: &str, env: &[(&str, &str)]) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(PROGRAM)
        .args([service, "--port", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    while awc::Client::default().get(&url).send().await.is_err() {
        assert!(started.elapsed() < PATIENCE, "{service} did not answer at {url}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

async fn get_json(url: &str) -> Value {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    response.json().await.unwrap()
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
