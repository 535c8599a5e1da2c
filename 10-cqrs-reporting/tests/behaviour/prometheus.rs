//! The shipped Prometheus files, checked by the real Prometheus: its
//! `promtool` checks them, and a Prometheus started with them finds, scrapes
//! and counts the running step. These need `prometheus` and `promtool` on
//! PATH (Debian/Ubuntu: `apt-get install prometheus`), so they are ignored
//! by default; `.ci/run` installs Prometheus and runs them:
//!
//!     cargo test -p step10-cqrs-reporting --test behaviour -- --ignored prometheus::

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support::binary::{free_ports, spawn, start_step};
use crate::support::request;

/// The longest any test waits: Prometheus scrapes and asks the registry
/// every 5 s (prometheus.yml), so this is longer than elsewhere.
const PATIENCE: Duration = Duration::from_secs(60);

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus").join(file)
}

fn promtool(args: &[&str]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is not on PATH (apt-get install prometheus)");
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

#[test]
#[ignore = "needs prometheus on PATH"]
fn promtool_accepts_the_config_and_the_alerts_and_their_tests_pass() {
    let said = promtool(&["check", "config", shipped("prometheus.yml").to_str().unwrap()]);
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
    let said = promtool(&["check", "rules", shipped("alerts.yml").to_str().unwrap()]);
    assert!(said.contains("SUCCESS: 4 rules found"), "{said}");
    let said = promtool(&["test", "rules", shipped("alerts_test.yml").to_str().unwrap()]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// Prometheus, started with the shipped files (the registry's port changed
/// to the test's), listening on a free port, keeping its data in a folder
/// of its own that goes when it stops.
struct Prometheus {
    _process: Child,
    url: String,
    folder: PathBuf,
}

impl Prometheus {
    fn start(registry_port: u16) -> Prometheus {
        let port = free_ports(1)[0];
        let folder = std::env::temp_dir().join(format!("workshop-prometheus-{port}"));
        std::fs::create_dir_all(&folder).unwrap();
        let config = std::fs::read_to_string(shipped("prometheus.yml")).unwrap();
        assert!(config.contains("127.0.0.1:8500"), "the config no longer names the registry");
        let config = config.replace("127.0.0.1:8500", &format!("127.0.0.1:{registry_port}"));
        std::fs::write(folder.join("prometheus.yml"), config).unwrap();
        std::fs::copy(shipped("alerts.yml"), folder.join("alerts.yml")).unwrap();
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", folder.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", folder.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus is not on PATH (apt-get install prometheus)");
        Prometheus { _process: process, url: format!("http://127.0.0.1:{port}"), folder }
    }

    /// The `data` of a Prometheus API answer, or None while it is not up.
    async fn api(&self, path: &str) -> Option<Value> {
        let mut response =
            awc::Client::default().get(format!("{}{path}", self.url)).send().await.ok()?;
        let answer: Value = response.json().limit(4 << 20).await.ok()?;
        assert_eq!(answer["status"], "success", "{path}: {answer}");
        Some(answer["data"].clone())
    }

    /// Asks `path` until `done` holds of its answer; returns the answer.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answer = self.api(path).await;
            if let Some(answer) = answer.filter(&done) {
                return answer;
            }
            assert!(Instant::now() < deadline, "{path} never answered as expected");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The targets Prometheus scrapes successfully, as `service@address`.
    async fn targets_up(&self, wanted: usize) -> Vec<String> {
        let up = |targets: &Value| -> Vec<String> {
            targets["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|target| target["health"] == "up")
                .map(|target| {
                    let label = |name: &str| target["labels"][name].as_str().unwrap().to_string();
                    format!("{}@{}", label("service"), label("instance"))
                })
                .collect()
        };
        let targets = self.wait_for("/api/v1/targets", |targets| up(targets).len() >= wanted).await;
        let mut up = up(&targets);
        up.sort();
        up
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// The API path that evaluates `expression` (each byte percent-encoded).
fn query(expression: &str) -> String {
    let encoded: String = expression.bytes().map(|byte| format!("%{byte:02X}")).collect();
    format!("/api/v1/query?query={encoded}")
}

#[actix_web::test]
#[ignore = "needs prometheus on PATH"]
async fn prometheus_finds_scrapes_and_counts_every_instance_and_runs_the_dashboard() {
    let (_step, ports) = start_step(&[]).await;
    let prometheus = Prometheus::start(ports[0]);

    // Every instance, found in the registry, scraped: up == 1.
    let up = prometheus.targets_up(7).await;
    let mut expected: Vec<String> =
        [("gateway", 1), ("registry", 0), ("service1", 2), ("service2", 3)]
            .iter()
            .chain(&[("users", 4), ("accounts", 5), ("reports", 6)])
            .map(|(service, i)| format!("{service}@127.0.0.1:{}", ports[*i]))
            .collect();
    expected.sort();
    assert_eq!(up, expected);
    prometheus.wait_for(&query("sum(up)"), |data| data["result"][0]["value"][1] == "7").await;

    // Requests the test makes, counted by Prometheus once it has scraped.
    for _ in 0..5 {
        let url = format!("http://127.0.0.1:{}/breakers", ports[1]);
        let response = request("GET", &url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let counted = query(r#"sum(http_requests_total{service="gateway",route="/breakers"})"#);
    prometheus.wait_for(&counted, |data| data["result"][0]["value"][1] == "5").await;

    // Another instance of service2, started later: found and scraped,
    // without restarting Prometheus.
    let late_port = free_ports(1)[0];
    let env = [("REGISTRY_URL", format!("http://127.0.0.1:{}", ports[0]))];
    let (_late, _) = spawn(&["service2", "--port", &late_port.to_string()], &env);
    let up = prometheus.targets_up(8).await;
    assert!(up.contains(&format!("service2@127.0.0.1:{late_port}")), "{up:?}");

    // Every query of the Grafana dashboard is one Prometheus can run.
    let dashboard = std::fs::read_to_string(shipped("grafana/dashboards/workshop.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let expressions: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap())
        .collect();
    assert!(expressions.len() >= 8, "{expressions:?}");
    for expression in expressions {
        // An expression Prometheus cannot parse is a 400 with status "error".
        let answer = prometheus.api(&query(expression)).await;
        assert!(answer.is_some(), "{expression}");
    }
}
