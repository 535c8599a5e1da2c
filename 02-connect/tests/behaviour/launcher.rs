//! Drives the real binary, as a learner does with `cargo run`: every
//! service on port 0 (a free port the OS picks), found again in the logs.

use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::PATIENCE;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step02-connect");

/// The binary, running, with its stdout and stderr read line by line.
struct Running {
    process: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, String)]) -> Running {
        let mut process = command(args, env).spawn().expect("cannot start the step's binary");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(read_lines(process.stdout.take().unwrap(), sender.clone()));
        tokio::spawn(read_lines(process.stderr.take().unwrap(), sender));
        Running { process, lines, seen: Vec::new() }
    }

    /// Waits for a line that contains `text` (or finds one already read),
    /// and returns it.
    async fn line_with(&mut self, text: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
            return line.clone();
        }
        let found = timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no line with {text:?}; the output was:\n{}", self.seen.join("\n")),
        }
    }

    /// Waits until `service` says where it listens; returns its URL and pid.
    async fn listening(&mut self, service: &str) -> (String, u32) {
        let line = self.line_with(&format!("{service} listening on ")).await;
        let url = line.split("listening on ").nth(1).unwrap().split(' ').next().unwrap();
        let pid = line.split("(pid ").nth(1).unwrap().trim_end_matches(')');
        (url.to_string(), pid.parse().unwrap())
    }

    async fn exit_status(&mut self) -> ExitStatus {
        match timeout(PATIENCE, self.process.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("still running; the output was:\n{}", self.seen.join("\n")),
        }
    }

    /// Everything the binary printed until it ended.
    async fn rest_of_output(&mut self) -> String {
        while let Ok(Some(line)) = timeout(PATIENCE, self.lines.recv()).await {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// The binary with `args` and `env`, its output piped.
fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(PROGRAM);
    command
        .args(args)
        .env_remove("BIND_HOST")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn read_lines(from: impl AsyncRead + Unpin, to: mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = to.send(line);
    }
}

async fn get_text(url: &str) -> String {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
}

#[cfg(unix)]
fn send_signal(signal: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Every service on a free port of its own, service1 knowing where service2 is.
fn free_ports() -> Vec<(&'static str, String)> {
    // The OS picks a free port for each service, which then takes it (a
    // small race with other programs): service1 must be told service2's URL
    // up front. The ports are held together while they are picked, so they
    // differ; and no service binds port 0, which the OS could answer with a
    // port picked here and already let go.
    let held: Vec<TcpListener> =
        (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let port = |i: usize| held[i].local_addr().unwrap().port();
    let (service1_port, service2_port) = (port(0), port(1));
    drop(held);
    vec![
        ("SERVICE1_PORT", service1_port.to_string()),
        ("SERVICE2_PORT", service2_port.to_string()),
        ("SERVICE2_URL", format!("http://127.0.0.1:{service2_port}")),
    ]
}

#[actix_web::test]
async fn help_lists_the_services_and_their_options() {
    let mut help = Running::start(&["--help"], &[]);
    assert!(help.exit_status().await.success());
    let text = help.rest_of_output().await;
    for expected in ["service1", "service2", "--host", "BIND_HOST"] {
        assert!(text.contains(expected), "--help does not mention {expected}:\n{text}");
    }

    let mut help = Running::start(&["service1", "--help"], &[]);
    assert!(help.exit_status().await.success());
    let text = help.rest_of_output().await;
    for expected in ["--port", "SERVICE1_PORT", "SERVICE2_URL", "--service2-timeout"] {
        assert!(text.contains(expected), "service1 --help does not mention {expected}:\n{text}");
    }
}

#[cfg(unix)]
#[actix_web::test]
async fn the_launcher_starts_every_service_and_stops_them_all_on_ctrl_c() {
    let mut step = Running::start(&[], &free_ports());
    let (service1_url, _) = step.listening("service1").await;
    let (service2_url, _) = step.listening("service2").await;
    assert_eq!(get_text(&service1_url).await, r#"{"name":"service 2"}"#);
    assert_eq!(get_text(&service2_url).await, r#"{"name":"service 2"}"#);

    // Ctrl-C reaches only the launcher here (a terminal would signal every
    // process of the step): the launcher must stop its services itself.
    send_signal("INT", step.process.id().unwrap());
    assert!(step.exit_status().await.success());
    let output = step.rest_of_output().await;
    assert!(output.contains("service1 | "), "lines are prefixed with the service:\n{output}");
    assert!(output.contains("service1 stopped"), "{output}");
    assert!(output.contains("service2 stopped"), "{output}");
}

#[actix_web::test]
async fn a_port_in_use_stops_the_step_with_a_message_that_says_what_to_do() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let mut step =
        Running::start(&[], &[("SERVICE1_PORT", "0".to_string()), ("SERVICE2_PORT", port.clone())]);
    let status = step.exit_status().await;
    let output = step.rest_of_output().await;
    assert_eq!(status.code(), Some(1), "{output}");
    let expected =
        format!("service2 cannot listen on 127.0.0.1:{port}: the port is already in use");
    assert!(output.contains(&expected), "{output}");
    assert!(output.contains("SERVICE2_PORT=<N> for the whole step"), "{output}");
    assert!(
        output.contains("launcher | service2 ended (exit status: 1) while the step ran"),
        "{output}"
    );
}

#[cfg(unix)]
#[actix_web::test]
async fn a_service_that_dies_is_reported_with_its_exit_status() {
    let mut step = Running::start(&[], &free_ports());
    step.listening("service1").await;
    let (_, service2_pid) = step.listening("service2").await;

    send_signal("KILL", service2_pid);
    assert_eq!(step.exit_status().await.code(), Some(1));
    let output = step.rest_of_output().await;
    assert!(output.contains("service2 ended (signal: 9 (SIGKILL)) while the step ran"), "{output}");
    assert!(output.contains("service1 stopped"), "the others are stopped too:\n{output}");
}

#[cfg(unix)]
#[actix_web::test]
async fn services_do_not_outlive_a_killed_launcher() {
    let mut step = Running::start(&[], &free_ports());
    let (service1_url, _) = step.listening("service1").await;
    let (service2_url, _) = step.listening("service2").await;

    send_signal("KILL", step.process.id().unwrap());
    step.exit_status().await;
    for url in [service1_url, service2_url] {
        let address = url.trim_start_matches("http://").to_string();
        let port_freed = timeout(PATIENCE, async {
            while tokio::net::TcpStream::connect(&address).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(port_freed.await.is_ok(), "{url} still answers after the launcher was killed");
    }
}

#[actix_web::test]
async fn one_service_runs_alone_on_the_port_given() {
    let mut service2 = Running::start(&["service2", "--port", "0"], &[]);
    let (url, _pid) = service2.listening("service2").await;
    assert_eq!(get_text(&format!("{url}/anything")).await, r#"{"name":"service 2"}"#);
    assert!(!service2.seen.iter().any(|line| line.contains("service1")));

    #[cfg(unix)]
    {
        send_signal("TERM", _pid);
        assert!(service2.exit_status().await.success());
        assert!(service2.rest_of_output().await.contains("service2 stopped"));
    }
}

#[actix_web::test]
async fn a_mistyped_service2_url_stops_service1_at_once() {
    let mut service1 = Running::start(&["service1", "--service2-url", "htp://127.0.0.1:3003"], &[]);
    assert_eq!(service1.exit_status().await.code(), Some(2));
    let output = service1.rest_of_output().await;
    assert!(
        output.contains("invalid value 'htp://127.0.0.1:3003' for '--service2-url <SERVICE2_URL>': not an http:// URL"),
        "{output}"
    );
}

/// What the launcher says once its output is read again after lines were
/// dropped: `launcher | 1234 lines dropped while the terminal was not reading`.
const DROPPED: &str = " dropped while the terminal was not reading";

#[actix_web::test]
async fn a_terminal_that_stops_reading_stops_neither_the_services_nor_a_signal() {
    // As with `cargo run | sleep 300`, or Ctrl-S in a terminal.
    let (mut step, client, url) = fill_the_unread_output(&[], free_ports(), "launcher").await;

    // Not read again, the pipe fills again; a signal still stops the step.
    call_service2(&client, &url, 1500).await;
    #[cfg(unix)]
    {
        send_signal("TERM", step.id().unwrap());
        let stopped = timeout(PATIENCE, step.wait()).await;
        assert!(stopped.expect("SIGTERM did not stop the launcher").unwrap().success());
        assert!(client.get(&url).send().await.is_err(), "service2 outlived the launcher");
    }
}

#[actix_web::test]
async fn a_service_alone_whose_terminal_stops_reading_still_answers() {
    // As with `cargo run -- service2 | sleep 300`: service2's own stdout.
    let (mut service2, client, url) =
        fill_the_unread_output(&["service2"], free_ports(), "service2").await;

    // Not read again, the pipe fills again; a signal still stops it.
    call_service2(&client, &url, 1500).await;
    #[cfg(unix)]
    {
        send_signal("TERM", service2.id().unwrap());
        let stopped = timeout(PATIENCE, service2.wait()).await;
        assert!(stopped.expect("SIGTERM did not stop service2").unwrap().success());
    }
}

/// Runs the program with `args`, its stdout a pipe that nobody reads for
/// now, and calls service2 far more often than the pipe and the output's
/// queue hold (about a thousand lines each): every call must be answered.
/// Then reads the output again: `speaker`'s line must say how many lines
/// went missing. Returns the program, still running, its output unread
/// since, a client, and service2's URL.
async fn fill_the_unread_output(
    args: &[&str],
    mut env: Vec<(&'static str, String)>,
    speaker: &str,
) -> (Child, awc::Client, String) {
    let url = format!("http://127.0.0.1:{}/", service2_port(&mut env));
    let mut program = command(args, &env).stderr(Stdio::null()).spawn().unwrap();
    let client = awc::Client::default();
    let deadline = Instant::now() + PATIENCE;
    while client.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "service2 never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call_service2(&client, &url, 3000).await;

    let mut output = BufReader::new(program.stdout.take().unwrap()).lines();
    let notice = async {
        while let Ok(Some(line)) = output.next_line().await {
            if line.contains(DROPPED) {
                return line;
            }
        }
        panic!("the output ended with no notice of lines dropped");
    };
    let more_lines = async {
        loop {
            call_service2(&client, &url, 1).await;
        }
    };
    let notice = timeout(PATIENCE, async {
        tokio::select! {
            line = notice => line,
            _ = more_lines => unreachable!(),
        }
    });
    let notice = notice.await.expect("no notice of lines dropped once the output was read");
    let count =
        notice.strip_prefix(&format!("{speaker} | ")).and_then(|rest| rest.split(' ').next());
    assert!(count.is_some_and(|count| count.parse::<usize>().is_ok()), "{notice}");
    (program, client, url)
}

/// service2's port in `env`, made a free one if it is 0 (any port) there.
fn service2_port(env: &mut [(&str, String)]) -> u16 {
    let (_, port) = env.iter_mut().find(|(name, _)| *name == "SERVICE2_PORT").unwrap();
    if port == "0" {
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        *port = free.to_string();
    }
    port.parse().unwrap()
}

/// Calls service2 `count` times; each call logs a line, and must be answered.
async fn call_service2(client: &awc::Client, url: &str, count: usize) {
    for call in 1..=count {
        let answer = async {
            let mut response = client.get(url).send().await.map_err(|error| error.to_string())?;
            response.body().await.map_err(|error| error.to_string())
        };
        let answer = answer.await;
        let expected = br#"{"name":"service 2"}"#;
        assert!(answer.as_deref() == Ok(expected), "call {call} of {count} to {url}: {answer:?}");
    }
}
