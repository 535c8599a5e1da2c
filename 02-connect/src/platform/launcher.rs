//! The launcher: `cargo run` with no service starts every service of the
//! step, each as a child process of this same program, as they would run
//! in production, and prints their lines under their names. They stop
//! together: on Ctrl-C or SIGTERM, or as soon as one of them stops on its
//! own, because a step that is half up only confuses.
//!
//! It stops a service by closing its stdin (see `shutdown.rs`), and kills
//! it only if it has not stopped after `STOP_GRACE`. It copies what the
//! services print through an [`Output`] that never waits for the terminal,
//! so that a terminal that stops reading stops neither the services nor
//! Ctrl-C.

use std::io::{self, IsTerminal};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::output::Output;
use super::{StoppedBy, shutdown_signal};

/// How long a service gets to stop by itself before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the terminal has to take the last lines once the services stop.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Starts every one of `services` (by name, in this order) as a child
/// process of this same program, with `--host host`, and watches over them
/// until they stop: exit 0 on Ctrl-C or SIGTERM, 1 if one stopped by itself.
pub fn launch_all(host: &str, services: &[&'static str]) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let terminal = Terminal::open();
    let outcome = runtime.block_on(async {
        let this_program = std::env::current_exe().expect("cannot find this program's path");
        let (stop, _) = watch::channel(());
        let mut running = JoinSet::new();
        for (index, &name) in services.iter().enumerate() {
            let child = Command::new(&this_program)
                .args(["--supervised", "--host", host, name])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => {
                    running.spawn(supervise(
                        name,
                        prefix(name, index, services),
                        child,
                        stop.subscribe(),
                        terminal.clone(),
                    ));
                }
                Err(error) => {
                    terminal.say(&format!("cannot start {name}: {error}"));
                    let _ = stop.send(());
                    running.join_all().await;
                    return ExitCode::FAILURE;
                }
            }
        }

        let outcome = tokio::select! {
            _ = shutdown_signal(StoppedBy::CtrlC) => {
                terminal.say("stopping every service");
                ExitCode::SUCCESS
            }
            Some(Ok((name, status))) = running.join_next() => {
                terminal.say(&format!("{name} ended ({}) while the step ran; stopping the others", describe(&status)));
                ExitCode::FAILURE
            }
        };
        let _ = stop.send(());
        for (name, status) in running.join_all().await {
            if !matches!(&status, Ok(status) if status.success()) {
                terminal.say(&format!("{name} ended with {}", describe(&status)));
            }
        }
        outcome
    });
    // The last lines go out, unless the terminal is still not reading after
    // OUTPUT_GRACE (once every task is gone).
    drop(runtime);
    terminal.flush(OUTPUT_GRACE);
    outcome
}

/// Watches over one service: copies its output line by line under its
/// prefix, and stops it when told to by closing its stdin (see
/// `shutdown_signal`), killing it if it has not stopped after `STOP_GRACE`.
async fn supervise(
    name: &'static str,
    prefix: String,
    mut child: Child,
    mut stop: watch::Receiver<()>,
    terminal: Terminal,
) -> (&'static str, io::Result<ExitStatus>) {
    let stdout =
        tokio::spawn(copy_lines(child.stdout.take(), prefix.clone(), terminal.stdout.clone()));
    let stderr = tokio::spawn(copy_lines(child.stderr.take(), prefix, terminal.stderr.clone()));
    let stdin = child.stdin.take();

    let ended_by_itself = tokio::select! {
        status = child.wait() => Some(status),
        _ = stop.changed() => None,
    };
    let status = match ended_by_itself {
        Some(status) => status,
        None => {
            drop(stdin);
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    terminal.say(&format!("{name} did not stop within {STOP_GRACE:?}; killing it"));
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    };
    // Print everything the service said before it ended.
    let _ = tokio::join!(stdout, stderr);
    (name, status)
}

/// Copies a child's output to ours, line by line, each under its prefix.
async fn copy_lines(from: Option<impl AsyncRead + Unpin>, prefix: String, to: Output) {
    let Some(from) = from else { return };
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    while matches!(from.read_until(b'\n', &mut line).await, Ok(read) if read > 0) {
        let text = String::from_utf8_lossy(&line);
        to.print(format!("{prefix} {}", text.trim_end()));
        line.clear();
    }
}

/// `service1 |`, padded so that every service's lines line up, and coloured
/// when a person is watching (and has not asked for NO_COLOR).
fn prefix(name: &str, index: usize, services: &[&str]) -> String {
    const COLOURS: [&str; 5] = ["36", "35", "33", "32", "34"];
    let width = services.iter().map(|name| name.len()).max().unwrap_or(0);
    let label = format!("{name:width$} |");
    if io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{}m{label}\x1b[0m", COLOURS[index % COLOURS.len()])
    } else {
        label
    }
}

/// The launcher's stdout and stderr, each written by a thread of its own
/// (see `output.rs`).
#[derive(Clone)]
struct Terminal {
    stdout: Output,
    stderr: Output,
}

impl Terminal {
    fn open() -> Terminal {
        Terminal {
            stdout: Output::open(io::stdout(), "launcher"),
            stderr: Output::open(io::stderr(), "launcher"),
        }
    }

    /// The launcher's own messages, under its own prefix.
    fn say(&self, message: &str) {
        self.stderr.print(format!("launcher | {message}"));
    }

    /// Waits until both streams are written out, for `within` at most.
    fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (stdout, stderr) = (self.stdout.written(), self.stderr.written());
        let _ = stdout.recv_timeout(within);
        let _ = stderr.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn describe(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("an error while waiting for it: {error}"),
    }
}
