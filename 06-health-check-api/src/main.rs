//! The launcher. With no arguments it starts every service of the step,
//! each in a process of its own, as they would run in production; with a
//! service's name (`-- service2 --port 3013`) it runs that service alone.

use std::io::{self, IsTerminal, Write};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use actix_web::http::Uri;
use clap::{Parser, Subcommand};
use step06_health_check_api::{
    REGISTRY_URL, RunOptions, StoppedBy, gateway, registry, run, service1, service2,
    shutdown_signal,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Workshop step 06: health endpoints and active health checks.
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
    /// The API gateway on port 3001: /api/<service>/... to any registered service, / for all
    Gateway(gateway::Options),
    /// Answers what service2 answers, on port 3002, registered in the registry
    Service1(service1::Options),
    /// Answers {"name":"service 2"} on port 3003, registered in the registry
    Service2(service2::Options),
    /// The service registry on port 8500 (Consul's HTTP API); dashboard at /
    Registry(registry::Options),
}

/// The services `cargo run` starts, in this order. The registry comes
/// first: the others register with it, or ask it, as soon as they start.
const SERVICES: [&str; 4] = [registry::NAME, service1::NAME, service2::NAME, gateway::NAME];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stopped_by = if cli.supervised { StoppedBy::Launcher } else { StoppedBy::CtrlC };
    let run_options = |service, port, registration| RunOptions {
        service,
        host: cli.host.clone(),
        port,
        stopped_by,
        registration,
    };
    match cli.service {
        None => launch_all(&cli.host),
        Some(Service::Gateway(options)) => run(
            run_options(gateway::NAME, options.port, Some(options.registration.clone())),
            |listener| gateway::server(listener, options),
        ),
        Some(Service::Service1(options)) => run(
            run_options(service1::NAME, options.port, Some(options.registration.clone())),
            |listener| service1::server(listener, options),
        ),
        Some(Service::Service2(options)) => run(
            run_options(service2::NAME, options.port, Some(options.registration)),
            service2::server,
        ),
        Some(Service::Registry(options)) => {
            run(run_options(registry::NAME, options.port, None), |listener| {
                registry::server_with_acl_token(listener, options.acl_token)
            })
        }
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
    let (terminal, all_written) = Terminal::open();
    let outcome = runtime.block_on(async move {
        let this_program = std::env::current_exe().expect("cannot find this program's path");
        // The registry starts first and stops last, after the others have
        // deregistered from it: it has a stop signal and a set of its own.
        let (stop, _) = watch::channel(());
        let (stop_registry, _) = watch::channel(());
        let mut services = JoinSet::new();
        let mut registry = JoinSet::new();
        for (index, name) in SERVICES.into_iter().enumerate() {
            let (set, stop) = match name {
                registry::NAME => (&mut registry, &stop_registry),
                _ => (&mut services, &stop),
            };
            let child = Command::new(&this_program)
                .args(["--supervised", "--host", host, name])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let started = match child {
                Ok(child) => {
                    set.spawn(supervise(
                        name,
                        prefix(name, index),
                        child,
                        stop.subscribe(),
                        terminal.clone(),
                    ));
                    true
                }
                Err(error) => {
                    terminal.say(&format!("cannot start {name}: {error}"));
                    false
                }
            };
            if !started
                || (name == registry::NAME && !registry_answers(&terminal, &mut registry).await)
            {
                let _ = stop.send(());
                let _ = stop_registry.send(());
                services.join_all().await;
                registry.join_all().await;
                return ExitCode::FAILURE;
            }
        }

        let outcome = tokio::select! {
            _ = shutdown_signal(StoppedBy::CtrlC) => {
                terminal.say("stopping every service");
                ExitCode::SUCCESS
            }
            Some(Ok((name, status))) = services.join_next() => {
                ended_early(&terminal, name, &status)
            }
            Some(Ok((name, status))) = registry.join_next() => {
                ended_early(&terminal, name, &status)
            }
        };
        let _ = stop.send(());
        let mut ended = services.join_all().await;
        let _ = stop_registry.send(());
        ended.extend(registry.join_all().await);
        for (name, status) in ended {
            if !matches!(&status, Ok(status) if status.success()) {
                terminal.say(&format!("{name} ended with {}", describe(&status)));
            }
        }
        outcome
    });
    // The last lines go out, unless the terminal is still not reading after
    // OUTPUT_GRACE (once every task, and its `Terminal`, is gone).
    drop(runtime);
    let _ = all_written.recv_timeout(OUTPUT_GRACE);
    outcome
}

fn ended_early(terminal: &Terminal, name: &str, status: &io::Result<ExitStatus>) -> ExitCode {
    terminal.say(&format!(
        "{name} ended ({}) while the step ran; stopping the others",
        describe(status)
    ));
    ExitCode::FAILURE
}

/// How long the launcher waits for the registry to answer.
const REGISTRY_PATIENCE: Duration = Duration::from_secs(10);

/// Waits until the registry accepts connections where the services will
/// look for it (REGISTRY_URL). False, with the reason said, if it stopped
/// or did not answer in time.
async fn registry_answers(
    terminal: &Terminal,
    registry: &mut JoinSet<(&'static str, io::Result<ExitStatus>)>,
) -> bool {
    let url = std::env::var("REGISTRY_URL").unwrap_or_else(|_| REGISTRY_URL.to_string());
    let address = url
        .parse::<Uri>()
        .ok()
        .and_then(|uri| Some(format!("{}:{}", uri.host()?, uri.port_u16().unwrap_or(80))))
        .unwrap_or_default();
    let answering = async {
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        answered = tokio::time::timeout(REGISTRY_PATIENCE, answering) => {
            if answered.is_err() {
                terminal.say(&format!(
                    "the registry did not answer at {url} within {REGISTRY_PATIENCE:?}; \
                     if it listens elsewhere, set REGISTRY_URL to match"
                ));
            }
            answered.is_ok()
        }
        Some(Ok((name, status))) = registry.join_next() => {
            ended_early(terminal, name, &status);
            false
        }
    }
}

/// Watches over one service: forwards its output line by line under its
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
        tokio::spawn(forward(child.stdout.take(), prefix.clone(), terminal.stdout.clone()));
    let stderr = tokio::spawn(forward(child.stderr.take(), prefix, terminal.stderr.clone()));
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
async fn forward(from: Option<impl AsyncRead + Unpin>, prefix: String, to: Output) {
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

/// Lines waiting for a slow terminal; beyond that, lines are dropped.
const OUTPUT_QUEUE: usize = 1000;
/// How long the terminal has to take the last lines once the services stop.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The launcher's stdout and stderr. A terminal that stops reading (Ctrl-S,
/// a pager left open, `| sleep 300`) must stop neither the services, which
/// would block on their next log line, nor Ctrl-C: so each stream is
/// written by a thread of its own, and only that thread ever waits for it.
#[derive(Clone)]
struct Terminal {
    stdout: Output,
    stderr: Output,
}

impl Terminal {
    /// The two streams, and a channel that closes when both are written out.
    fn open() -> (Terminal, mpsc::Receiver<()>) {
        let (written, all_written) = mpsc::channel();
        let stdout = Output::open(io::stdout(), written.clone());
        let stderr = Output::open(io::stderr(), written);
        (Terminal { stdout, stderr }, all_written)
    }

    /// The launcher's own messages, under its own prefix.
    fn say(&self, message: &str) {
        self.stderr.print(format!("launcher | {message}"));
    }
}

/// One output stream, fed through a bounded queue to the thread that writes it.
#[derive(Clone)]
struct Output {
    queue: SyncSender<String>,
    /// Lines the queue could not take since the last that it could.
    dropped: Arc<AtomicUsize>,
}

impl Output {
    fn open(mut to: impl Write + Send + 'static, written: mpsc::Sender<()>) -> Output {
        let (queue, lines) = mpsc::sync_channel::<String>(OUTPUT_QUEUE);
        std::thread::spawn(move || {
            for line in lines {
                // Output going nowhere (a closed pipe) is no reason to stop.
                let _ = writeln!(to, "{line}");
            }
            drop(written);
        });
        Output { queue, dropped: Arc::default() }
    }

    /// Queues a line without waiting. A line that does not fit is dropped;
    /// once the reader reads again, it is told how many were, and where.
    fn print(&self, line: String) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let lines = if dropped == 1 { "line" } else { "lines" };
            let notice =
                format!("launcher | {dropped} {lines} dropped while the terminal was not reading");
            if self.queue.try_send(notice).is_err() {
                self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
                return;
            }
        }
        if self.queue.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn describe(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("an error while waiting for it: {error}"),
    }
}
