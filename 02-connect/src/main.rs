//! The launcher. With no arguments it starts every service of the step,
//! each in a process of its own, as they would run in production; with a
//! service's name (`-- service2 --port 3013`) it runs that service alone.

use std::io::{self, IsTerminal, Write};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use step02_connect::{RunOptions, StoppedBy, run, service1, service2, shutdown_signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Workshop step 02: service1 calls service2 over HTTP.
#[derive(Parser)]
#[command(
    version,
    subcommand_value_name = "SERVICE",
    subcommand_help_heading = "Services",
    after_help = "With no SERVICE, every service of the step starts, each as a child process;\n\
                  Ctrl-C stops them all. `<SERVICE> --help` lists that service's options."
)]
struct Cli {
    /// Address to listen on: 127.0.0.1 is this machine only, 0.0.0.0 every network
    #[arg(long, global = true, env = "BIND_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Set by the launcher on the services it starts: stop when stdin closes.
    #[arg(long, global = true, hide = true)]
    supervised: bool,

    #[command(subcommand)]
    service: Option<Service>,
}

#[derive(Subcommand)]
enum Service {
    /// Answers what service2 answers, on port 3002
    Service1(service1::Options),
    /// Answers {"name":"service 2"} on port 3003
    Service2(service2::Options),
}

/// The services `cargo run` starts, in this order.
const SERVICES: [&str; 2] = [service1::NAME, service2::NAME];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stopped_by = if cli.supervised { StoppedBy::Launcher } else { StoppedBy::CtrlC };
    match cli.service {
        None => launch_all(&cli.host),
        Some(Service::Service1(options)) => run(
            RunOptions { service: service1::NAME, host: cli.host, port: options.port, stopped_by },
            |listener| service1::server(listener, options),
        ),
        Some(Service::Service2(options)) => run(
            RunOptions { service: service2::NAME, host: cli.host, port: options.port, stopped_by },
            service2::server,
        ),
    }
}

/// How long a service gets to stop by itself before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts every service as a child process of this same binary and prefixes
/// each line they print with their name. They stop together: on Ctrl-C or
/// SIGTERM (exit 0), or as soon as one of them stops on its own (exit 1),
/// because a step that is half up only confuses.
fn launch_all(host: &str) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(async {
        let this_program = std::env::current_exe().expect("cannot find this program's path");
        let (stop, _) = watch::channel(());
        let mut services = JoinSet::new();
        for (index, name) in SERVICES.into_iter().enumerate() {
            let child = Command::new(&this_program)
                .args(["--supervised", "--host", host, name])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => {
                    services.spawn(supervise(name, prefix(name, index), child, stop.subscribe()));
                }
                Err(error) => {
                    say(&format!("cannot start {name}: {error}"));
                    let _ = stop.send(());
                    services.join_all().await;
                    return ExitCode::FAILURE;
                }
            }
        }

        let outcome = tokio::select! {
            _ = shutdown_signal(StoppedBy::CtrlC) => {
                say("stopping every service");
                ExitCode::SUCCESS
            }
            Some(Ok((name, status))) = services.join_next() => {
                say(&format!("{name} ended ({}) while the step ran; stopping the others", describe(&status)));
                ExitCode::FAILURE
            }
        };
        let _ = stop.send(());
        for (name, status) in services.join_all().await {
            if !matches!(&status, Ok(status) if status.success()) {
                say(&format!("{name} ended with {}", describe(&status)));
            }
        }
        outcome
    })
}

/// Watches over one service: forwards its output line by line under its
/// prefix, and stops it when told to by closing its stdin (see
/// `shutdown_signal`), killing it if it has not stopped after `STOP_GRACE`.
async fn supervise(
    name: &'static str,
    prefix: String,
    mut child: Child,
    mut stop: watch::Receiver<()>,
) -> (&'static str, io::Result<ExitStatus>) {
    let stdout = tokio::spawn(forward(child.stdout.take(), prefix.clone(), Stream::Stdout));
    let stderr = tokio::spawn(forward(child.stderr.take(), prefix, Stream::Stderr));
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
                    say(&format!("{name} did not stop within {STOP_GRACE:?}; killing it"));
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

enum Stream {
    Stdout,
    Stderr,
}

/// Copies a child's output to ours, line by line, each under its prefix.
async fn forward(from: Option<impl AsyncRead + Unpin>, prefix: String, to: Stream) {
    let Some(from) = from else { return };
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    while matches!(from.read_until(b'\n', &mut line).await, Ok(read) if read > 0) {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        // Output going nowhere (a closed pipe) is no reason to stop a service.
        let _ = match to {
            Stream::Stdout => writeln!(io::stdout().lock(), "{prefix} {text}"),
            Stream::Stderr => writeln!(io::stderr().lock(), "{prefix} {text}"),
        };
        line.clear();
    }
}

/// `service1 |`, padded so that every service's lines line up, and coloured
/// when a person is watching (and has not asked for NO_COLOR).
fn prefix(name: &str, index: usize) -> String {
    const COLOURS: [&str; 5] = ["36", "35", "33", "32", "34"];
    let width = SERVICES.iter().map(|name| name.len()).max().unwrap_or(0);
    let label = format!("{name:width$} |");
    if io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{}m{label}\x1b[0m", COLOURS[index % COLOURS.len()])
    } else {
        label
    }
}

/// The launcher's own messages, under its own prefix.
fn say(message: &str) {
    let _ = writeln!(io::stderr().lock(), "launcher | {message}");
}

fn describe(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("an error while waiting for it: {error}"),
    }
}
