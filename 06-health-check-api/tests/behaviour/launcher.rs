//! Drives the real binary, as a learner does with `cargo run`: every
//! service on port 0 (a free port the OS picks), found again in the logs.

use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use crate::support::{PATIENCE, request};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step06-health-check-api");

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
    // Its own process group, as a terminal would give it.
    #[cfg(unix)]
    command.process_group(0);
    command
}

async fn read_lines(from: impl AsyncRead + Unpin, to: mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = to.send(line);
    }
}

/// Waits until `url` answers a body for which `done` holds, and returns it.
async fn wait_for_body(url: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let body = get_text(url).await;
        if done(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{url} never answered as expected: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_text(url: &str) -> String {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
}

/// Sends `signal` to a process, or to a process group (`-<pgid>`).
#[cfg(unix)]
fn send_signal(signal: &str, pid: impl std::fmt::Display) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".to_string(), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Both services on free ports, service1 knowing where service2 is.
fn free_ports() -> Vec<(&'static str, String)> {
    // The OS picks a free port for the registry, which then takes it (a
    // tiny race, harmless here): every service must be told its URL up
    // front. The services find each other through it.
    let registry_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    vec![
        ("REGISTRY_PORT", registry_port.to_string()),
        ("REGISTRY_URL", format!("http://127.0.0.1:{registry_port}")),
        ("GATEWAY_PORT", "0".to_string()),
        ("SERVICE1_PORT", "0".to_string()),
        ("SERVICE2_PORT", "0".to_string()),
    ]
}

#[actix_web::test]
async fn help_lists_the_services_and_their_options() {
    let mut help = Running::start(&["--help"], &[]);
    assert!(help.exit_status().await.success());
    let text = help.rest_of_output().await;
    for expected in ["gateway", "registry", "service1", "service2", "--host", "BIND_HOST"] {
        assert!(text.contains(expected), "--help does not mention {expected}:\n{text}");
    }

    let mut help = Running::start(&["service1", "--help"], &[]);
    assert!(help.exit_status().await.success());
    let text = help.rest_of_output().await;
    for expected in ["--port", "SERVICE1_PORT", "REGISTRY_URL", "--service2-timeout"] {
        assert!(text.contains(expected), "service1 --help does not mention {expected}:\n{text}");
    }
}

#[cfg(unix)]
#[actix_web::test]
async fn the_launcher_starts_every_service_and_stops_them_all_on_ctrl_c() {
    let ports = free_ports();
    let mut step = Running::start(&[], &ports);
    let (service1_url, _) = step.listening("service1").await;
    let (service2_url, _) = step.listening("service2").await;
    let passing = |body: &str| body == r#"{"name":"service 2"}"#;
    wait_for_body(&service1_url, passing).await;
    assert_eq!(get_text(&service2_url).await, r#"{"name":"service 2"}"#);
    let (gateway_url, _) = step.listening("gateway").await;
    let catalog = format!("{}/v1/catalog/services", ports[1].1);
    wait_for_body(&catalog, |body| body == r#"{"gateway":[],"service1":[],"service2":[]}"#).await;
    // The gateway finds service1 once the registry has checked it (within
    // its check interval): until then, service1's part is an error.
    let deadline = std::time::Instant::now() + PATIENCE;
    let aggregate = loop {
        let mut response = request("GET", &gateway_url).send().await.unwrap();
        let body = String::from_utf8_lossy(&response.body().await.unwrap()).to_string();
        if body.contains(r#"{"service":"service1","answer""#)
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(aggregate.starts_with(r#"{"services":[{"service":"service1","answer""#), "{aggregate}");

    // Ctrl-C reaches only the launcher here (a terminal would signal every
    // process of the step): the launcher must stop its services itself.
    send_signal("INT", step.process.id().unwrap());
    assert!(step.exit_status().await.success());
    let output = step.rest_of_output().await;
    assert!(output.contains("service1 | "), "lines are prefixed with the service:\n{output}");
    assert!(output.contains("service1 stopped"), "{output}");
    assert!(output.contains("service2 stopped"), "{output}");
    assert!(output.contains("gateway stopped"), "{output}");
}

#[actix_web::test]
async fn a_port_in_use_stops_the_step_with_a_message_that_says_what_to_do() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let mut ports = free_ports();
    ports.push(("SERVICE2_PORT", port.clone()));
    let mut step = Running::start(&[], &ports);
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
    // A registry URL where nothing listens: never the workshop's 8500.
    let mut service2 = Running::start(&["service2", "--port", "0"], &free_ports());
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
async fn a_mistyped_registry_url_stops_service1_at_once() {
    let mut service1 = Running::start(&["service1", "--registry-url", "htp://127.0.0.1:8500"], &[]);
    assert_eq!(service1.exit_status().await.code(), Some(2));
    let output = service1.rest_of_output().await;
    assert!(
        output.contains(
            "invalid value 'htp://127.0.0.1:8500' for '--registry-url <REGISTRY_URL>': not an http:// URL"
        ),
        "{output}"
    );
}

#[actix_web::test]
async fn the_gateway_will_not_listen_publicly_with_the_workshop_key() {
    let mut gateway = Running::start(&["--host", "0.0.0.0", "gateway", "--port", "0"], &[]);
    assert_eq!(gateway.exit_status().await.code(), Some(1));
    let output = gateway.rest_of_output().await;
    assert!(output.contains("gateway cannot start: it listens on 0.0.0.0:"), "{output}");
    assert!(output.contains("GATEWAY_API_KEY=<KEY>"), "{output}");
}

#[actix_web::test]
async fn the_registry_starts_first_and_every_service_registers_with_it() {
    let ports = free_ports();
    let registry_url = ports.iter().find(|(name, _)| *name == "REGISTRY_URL").unwrap().1.clone();
    let mut step = Running::start(&[], &ports);
    let (service2_url, _) = step.listening("service2").await;
    step.listening("service1").await;
    step.listening("gateway").await;
    let first = step.seen.iter().find(|line| line.contains(" listening on ")).unwrap();
    assert!(
        first.starts_with("registry |"),
        "the registry starts first:\n{}",
        step.seen.join("\n")
    );

    let service2_port = service2_url.rsplit(':').next().unwrap();
    let passing = format!("{registry_url}/v1/health/service/service2?passing");
    wait_for_body(&passing, |body| body.contains(&format!("\"Port\":{service2_port}"))).await;
    let catalog = format!("{registry_url}/v1/catalog/services");
    wait_for_body(&catalog, |body| body == r#"{"gateway":[],"service1":[],"service2":[]}"#).await;
}

#[actix_web::test]
async fn service2_waits_for_a_registry_that_is_not_up_yet() {
    let registry_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry_url = format!("http://127.0.0.1:{registry_port}");
    let mut service2 =
        Running::start(&["service2", "--port", "0", "--registry-url", &registry_url], &[]);
    let complaint = service2.line_with("cannot register").await;
    assert!(
        complaint.contains(&format!("registry at {registry_url} refused the connection")),
        "{complaint}"
    );
    assert!(complaint.contains("retrying in"), "{complaint}");

    let mut registry = Running::start(&["registry", "--port", &registry_port.to_string()], &[]);
    registry.listening("registry").await;
    service2.line_with("registered with the registry").await;
}

#[cfg(unix)]
#[actix_web::test]
async fn a_stopped_instance_deregisters_and_a_killed_one_fails_its_check() {
    let mut registry = Running::start(&["registry", "--port", "0"], &[]);
    let (registry_url, _) = registry.listening("registry").await;
    let service2_args =
        ["service2", "--port", "0", "--registry-url", &registry_url, "--check-interval", "200ms"];
    let mut stopped = Running::start(&service2_args, &[]);
    let mut killed = Running::start(&service2_args, &[]);
    let (_, stopped_pid) = stopped.listening("service2").await;
    let (killed_url, killed_pid) = killed.listening("service2").await;
    let health = format!("{registry_url}/v1/health/service/service2");
    let instances = |answer: &str| answer.matches("\"ServiceID\"").count();
    wait_for_body(&format!("{health}?passing"), |body| instances(body) == 2).await;

    send_signal("TERM", stopped_pid);
    assert!(stopped.exit_status().await.success());
    assert!(stopped.rest_of_output().await.contains("deregistered service2-127.0.0.1-"));
    assert_eq!(instances(&get_text(&health).await), 1, "deregistered before it stopped");

    send_signal("KILL", killed_pid);
    registry.line_with("is now critical").await;
    assert_eq!(instances(&get_text(&format!("{health}?passing")).await), 0);
    let refused = format!("HTTP GET {killed_url}/healthz: ");
    assert!(get_text(&health).await.contains(&refused), "the output says why");
}

#[cfg(unix)]
#[actix_web::test]
async fn the_gateway_routes_around_an_instance_that_stopped_or_was_killed() {
    let mut ports = free_ports();
    ports.push(("CHECK_INTERVAL", "200ms".to_string()));
    let registry_url = ports[1].1.clone();
    let mut step = Running::start(&[], &ports);
    let (gateway_url, _) = step.listening("gateway").await;
    let catalog = format!("{registry_url}/v1/catalog/services");
    wait_for_body(&catalog, |body| body == r#"{"gateway":[],"service1":[],"service2":[]}"#).await;

    // Two more instances of service2, started by hand.
    let service2_args = ["service2", "--port", "0", "--registry-url", &registry_url];
    let mut extra = Running::start(&service2_args, &ports);
    let mut killed = Running::start(&service2_args, &ports);
    let (_, extra_pid) = extra.listening("service2").await;
    let (_, killed_pid) = killed.listening("service2").await;
    let passing = format!("{registry_url}/v1/health/service/service2?passing");
    wait_for_body(&passing, |body| body.matches("\"ServiceID\"").count() == 3).await;

    // Each of the three gets a share of the calls through the gateway.
    let through_gateway = format!("{gateway_url}/api/service2/");
    let call = || async {
        let response = request("GET", &through_gateway).send().await.unwrap();
        response.status()
    };
    for _ in 0..6 {
        assert_eq!(call().await, StatusCode::OK);
    }
    extra.line_with("\"GET / HTTP/1.1\" 200").await;
    killed.line_with("\"GET / HTTP/1.1\" 200").await;

    // Stopped with Ctrl-C: deregistered at once. Killed: gone once its TTL
    // runs out. Then every call succeeds again.
    send_signal("INT", extra_pid);
    send_signal("KILL", killed_pid);
    wait_for_body(&passing, |body| body.matches("\"ServiceID\"").count() == 1).await;
    // The gateway may still call the killed one for the second it
    // remembers instances; after that, every call succeeds.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut successes_in_a_row = 0;
    while successes_in_a_row < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "calls kept failing after the instances left"
        );
        successes_in_a_row =
            if call().await == StatusCode::OK { successes_in_a_row + 1 } else { 0 };
    }
}

#[cfg(unix)]
#[actix_web::test]
async fn ctrl_c_in_a_terminal_stops_the_services_before_the_registry() {
    // A terminal sends Ctrl-C to every process of the step at once; the
    // launcher must still stop the registry last, so the others deregister.
    let ports = free_ports();
    let mut step = Running::start(&[], &ports);
    step.listening("gateway").await;
    let catalog = format!("{}/v1/catalog/services", ports[1].1);
    wait_for_body(&catalog, |body| body == r#"{"gateway":[],"service1":[],"service2":[]}"#).await;
    // The launcher leads a process group of its own (see `Running::start`).
    send_signal("INT", format!("-{}", step.process.id().unwrap()));
    assert!(step.exit_status().await.success());
    let output = step.rest_of_output().await;
    assert!(output.contains("INFO deregistered service2-127.0.0.1-"), "{output}");
    let registry_stopping = output.find("registry stopping").expect("the registry stops");
    let service2_stopped = output.find("service2 stopped").expect("service2 stops");
    assert!(service2_stopped < registry_stopping, "{output}");
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
