//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 9 1
//! cargo test -p step09-monitoring --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 9 1` (from
//! solutions/09-monitoring/hints.md). It runs the step's real binary and reads
//! `/metrics` as Prometheus does; the alert's check has `promtool` evaluate the
//! step's `prometheus/alerts.yml` on made-up series. It checks what Prometheus
//! sees, not how you wrote it.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use actix_web::http::StatusCode;
use serde_json::Value;

use support::binary::start_step;
use support::{request, scrape, value};

mod support;

const FALLBACKS: &str = "fallback_answers_total";

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_count_the_fallback_answers() {
    hints_only();
    fallbacks_are_counted("").await;
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_an_alert_on_fallbacks() {
    hints_only();
    // An alert on a metric that does not exist never fires: the counter of
    // exercise 1 first.
    fallbacks_are_counted(
        "The alert of exercise 2 is on the counter of exercise 1: do that first. ",
    )
    .await;

    if Command::new("promtool").arg("--version").output().is_err() {
        // Straight to the terminal: cargo test would hide a passing test's output.
        let _ = writeln!(
            std::io::stderr(),
            "exercise 2: the counter is there, but the alert is NOT checked: promtool is not \
             on PATH. Install Prometheus (Debian/Ubuntu: apt-get install prometheus; macOS: \
             brew install prometheus) and run this check again."
        );
        return;
    }
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus");
    let said = alerts_firing_at("3m", &["service2"]);
    assert!(
        said.is_ok(),
        "after 3 minutes of fallbacks for service2 (and none for service1), the alert \
         FallbackAnswers should fire, once, with the label upstream=\"service2\". promtool \
         said:\n{}",
        said.unwrap_err()
    );
    let said = alerts_firing_at("30s", &[]);
    assert!(
        said.is_ok(),
        "30 s after the fallbacks began, FallbackAnswers should not fire yet: only once they \
         have gone on for a minute (`for: 1m`). promtool said:\n{}",
        said.unwrap_err()
    );
    let said = alerts_firing_at("11m", &[]);
    assert!(
        said.is_ok(),
        "FallbackAnswers still fires 6 minutes after the last fallback: it should stop once \
         the fallbacks have stopped. promtool said:\n{}",
        said.unwrap_err()
    );

    // And the tests of alerts_test.yml, yours included, pass.
    let tests = alerts.join("alerts_test.yml");
    let output = Command::new("promtool").args(["test", "rules"]).arg(&tests).output().unwrap();
    assert!(
        output.status.success(),
        "`promtool test rules {}` fails:\n{}{}",
        tests.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the step, has the gateway answer service2's part of `/` from its
/// fallback once, and checks that its `/metrics` counted it; `first`
/// starts the hint when the counter is missing.
async fn fallbacks_are_counted(first: &str) {
    // Circuits that stay open while the check runs; no random delay.
    let env = [("SERVICE1_RANDOM_DELAY", "0s".into()), ("BREAKER_OPEN_FOR", "30s".into())];
    let (_step, ports) = start_step(&env).await;
    let gateway = format!("http://127.0.0.1:{}", ports[1]);

    // Every service answers `/`, and the gateway remembers each answer.
    let parts = aggregate(&gateway).await;
    assert!(parts.iter().all(|part| part.get("fallback").is_none()), "{parts:#?}");
    // Three failures in a row open the gateway's circuit for service2...
    for _ in 0..3 {
        let response = request("GET", &format!("{gateway}/api/service2/?fail=true")).send();
        assert_eq!(response.await.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    // ...and service2's part of `/` is its last answer, service1's a new one.
    let parts = aggregate(&gateway).await;
    let fallback = |service: &str| {
        let part = parts.iter().find(|part| part["service"] == service);
        part.is_some_and(|part| part.get("fallback").is_some())
    };
    assert!(fallback("service2") && !fallback("service1"), "{parts:#?}");

    let samples = scrape(&gateway).await;
    let counted: Vec<_> = samples.iter().filter(|sample| sample.name == FALLBACKS).collect();
    assert!(
        !counted.is_empty(),
        "{first}The gateway has just answered service2's part of / from its fallback, but its \
         /metrics has no {FALLBACKS}: Prometheus cannot see how often the gateway answers from \
         memory."
    );
    assert!(
        counted.iter().all(|sample| sample.labels.contains_key("upstream")),
        "{FALLBACKS} should name the service the fallback answered for as its label `upstream`, \
         as upstream_requests_total does; it has {counted:?}. (Not `service`: Prometheus gives \
         every series a `service` label of its own, the gateway's, and would rename yours \
         `exported_service`.)"
    );
    let service2 = value(&samples, FALLBACKS, &[("upstream", "service2")]);
    assert_eq!(
        service2, 1.0,
        "the gateway answered service2's part from its fallback once, but counted {service2}: \
         count one each time a last answer stands in for a new one"
    );
    let service1 = value(&samples, FALLBACKS, &[("upstream", "service1")]);
    assert_eq!(
        service1, 0.0,
        "service1 answered the gateway itself, yet {FALLBACKS}{{upstream=\"service1\"}} is \
         {service1}: count only the answers that come from the fallback"
    );
}

/// GETs the gateway's `/` (200); the parts of its answer.
async fn aggregate(gateway: &str) -> Vec<Value> {
    let mut response = request("GET", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    answer["services"].as_array().cloned().unwrap_or_default()
}

/// Has promtool evaluate the step's alerts.yml at `eval_time` on made-up
/// series, as Prometheus would: the gateway answers service2's part from its
/// fallback once a second for five minutes, then no more, and service1's
/// never. Ok when FallbackAnswers fires at that time for exactly the
/// services `upstreams`; otherwise what promtool said.
fn alerts_firing_at(eval_time: &str, upstreams: &[&str]) -> Result<(), String> {
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/alerts.yml");
    let sample =
        |upstream| format!("\n          - {{ labels: '{{upstream=\"{upstream}\"}}', value: 1 }}");
    let firing: String = upstreams.iter().map(sample).collect();
    let firing = if firing.is_empty() { " []".to_string() } else { firing };
    let gateway = r#"job="workshop", service="gateway", instance="127.0.0.1:3001""#;
    let test = format!(
        r#"rule_files:
  - {alerts}
evaluation_interval: 5s
tests:
  - interval: 5s
    input_series:
      - series: 'fallback_answers_total{{{gateway}, upstream="service2"}}'
        values: '0+5x60 300x120'
      - series: 'fallback_answers_total{{{gateway}, upstream="service1"}}'
        values: '0x180'
    promql_expr_test:
      - expr: count by (upstream) (ALERTS{{alertname="FallbackAnswers", alertstate="firing"}})
        eval_time: {eval_time}
        exp_samples:{firing}
"#,
        alerts = alerts.display()
    );
    let file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fallback-alert-{}-{eval_time}.yml", std::process::id()));
    std::fs::write(&file, test).unwrap();
    let output = Command::new("promtool").args(["test", "rules"]).arg(&file).output();
    let _ = std::fs::remove_file(&file);
    let output = output.unwrap();
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr)),
    }
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
