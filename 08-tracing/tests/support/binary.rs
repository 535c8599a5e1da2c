//! The step's binary, run by the tests that need its services in processes
//! of their own, as a learner runs them.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{PATIENCE, request};

const PROGRAM: &str = env!("CARGO_BIN_EXE_step08-tracing");

/// `n` ports free a moment ago, all different: each is held until all are
/// chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// Runs the step's binary with `args` and `env`; its output in lines.
pub fn spawn(args: &[&str], env: &[(&str, String)]) -> (Child, mpsc::UnboundedReceiver<String>) {
    let mut process = command(args, env).spawn().expect("cannot start the step's binary");
    let (sender, lines) = mpsc::unbounded_channel();
    let outputs: [Box<dyn AsyncRead + Unpin + Send>; 2] =
        [Box::new(process.stdout.take().unwrap()), Box::new(process.stderr.take().unwrap())];
    for output in outputs {
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = sender.send(line);
            }
        });
    }
    (process, lines)
}

/// The step's binary with `args` and `env`, its output piped. Its spans go
/// nowhere (never to a learner's Jaeger) unless `env` says where.
pub fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(PROGRAM);
    command
        .args(args)
        .env_remove("BIND_HOST")
        .env("OTEL_SDK_DISABLED", "true")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    command
}

/// Waits for a line that contains `text`; every line read on the way.
pub async fn lines_until(lines: &mut mpsc::UnboundedReceiver<String>, text: &str) -> Vec<String> {
    let mut seen = Vec::new();
    next_line_with(lines, &mut seen, text).await;
    seen
}

/// Waits for a line that contains `text`, and returns it; it and every
/// line read on the way are added to `seen`, which a failure shows.
pub async fn next_line_with(
    lines: &mut mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    text: &str,
) -> String {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            seen.push(line.clone());
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no line with {text:?}; the output was:\n{}", seen.join("\n")),
    }
}

/// The whole step, run by the launcher on free ports (the registry's, the
/// gateway's, service1's and service2's) with `env` besides; ready once a
/// call through the gateway reaches service2.
pub async fn start_step(env: &[(&str, String)]) -> (Child, Vec<u16>) {
    let ports = free_ports(4);
    let step_env = [
        ("REGISTRY_PORT", ports[0].to_string()),
        ("REGISTRY_URL", format!("http://127.0.0.1:{}", ports[0])),
        ("GATEWAY_PORT", ports[1].to_string()),
        ("SERVICE1_PORT", ports[2].to_string()),
        ("SERVICE2_PORT", ports[3].to_string()),
    ];
    let (launcher, _) = spawn(&[], &[&step_env[..], env].concat());
    // The registry first: a call through the gateway before service2 is
    // listed fails, and failed calls open circuits that then stay open for
    // longer than a loaded machine takes to start the rest.
    let registry = format!("http://127.0.0.1:{}", ports[0]);
    for service in ["service1", "service2"] {
        listed_passing(&registry, service).await;
    }
    let url = format!("http://127.0.0.1:{}/api/service1/", ports[1]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = request("GET", &url).send().await;
        if answer.is_ok_and(|answer| answer.status() == StatusCode::OK) {
            return (launcher, ports);
        }
        assert!(Instant::now() < deadline, "the step never answered through the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the registry lists an instance of `service` as passing.
pub async fn listed_passing(registry: &str, service: &str) {
    let url = format!("{registry}/v1/health/service/{service}?passing");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(mut answer) = request("GET", &url).send().await {
            let listed = answer.json::<Vec<serde_json::Value>>().await.unwrap_or_default();
            if !listed.is_empty() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the registry never listed {service} passing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
