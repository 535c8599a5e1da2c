//! The step's binary, run by the tests that need each service in a process
//! of its own (metrics.rs, prometheus.rs, cqrs.rs).

#![allow(dead_code)] // each test file uses some of it

use std::net::TcpListener;
use std::process::Stdio;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The longest any test waits for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

const PROGRAM: &str = env!("CARGO_BIN_EXE_step10-cqrs-reporting");

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` ports free a moment ago, all different: each is held until all are
/// chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// Runs the step's binary with `args` and `env`, without tracing; its
/// output in lines.
pub fn spawn(args: &[&str], env: &[(&str, String)]) -> (Child, mpsc::UnboundedReceiver<String>) {
    let mut command = Command::new(PROGRAM);
    command
        .args(args)
        .env_remove("BIND_HOST")
        .env("OTEL_SDK_DISABLED", "true")
        .env("DATA_DIR", env!("CARGO_TARGET_TMPDIR"))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut process = command.spawn().expect("cannot start the step's binary");
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

/// Waits for a line that contains `text`, and returns it.
pub async fn line_with(lines: &mut mpsc::UnboundedReceiver<String>, text: &str) -> String {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    found.ok().flatten().unwrap_or_else(|| panic!("no line with {text:?}"))
}
