//! `cargo workshop traffic` against the real steps: their binaries, each
//! service on a free port, and the companion's `--json` lines read as they
//! come. Every wait is for something the lines say, with a bound.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a service may take to start, and the traffic to show a change,
/// on a slow, busy machine.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long building a step may take, the first time with its dependencies.
const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The step's binary, built as `cargo build -p <package>` builds it, next
/// to this test's own target folder.
fn step_binary(package: &str) -> PathBuf {
    let mut build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package])
        .current_dir(workspace_root())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BUILD_PATIENCE;
    while build.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "cargo build -p {package} took too long");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(build.wait().unwrap().success(), "cargo build -p {package} failed");
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    profile.join(format!("{package}{}", std::env::consts::EXE_SUFFIX))
}

/// A running program, its output read line by line.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.env("NO_COLOR", "1").env_remove("RUST_LOG");
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        read_lines(child.stdout.take().unwrap(), lines.clone(), None);
        read_lines(child.stderr.take().unwrap(), lines.clone(), None);
        Running { child, lines }
    }

    /// Waits for a line that holds `text`, and returns it.
    fn line_with(&self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no line with {text:?}:\n{}", self.said());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the service says it listens: `http://127.0.0.1:PORT`.
    fn url(&self) -> String {
        let line = self.line_with(" listening on ");
        line.split(" listening on ").nth(1).unwrap().split(' ').next().unwrap().to_string()
    }

    fn said(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
    to: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line.clone());
            if let Some(to) = &to {
                let _ = to.send(line);
            }
        }
    });
}

/// A service of a step: `<binary> <service> --port 0 <args>`.
fn service(binary: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(binary);
    command.arg(name).args(["--port", "0"]).args(args).envs(env.iter().copied());
    Running::start(command)
}

/// `cargo workshop traffic --json …`, its lines as JSON objects.
struct Traffic {
    running: Running,
    objects: Receiver<String>,
    seen: Vec<Value>,
}

impl Traffic {
    fn start(gateway: &str, registry: &str, args: &[&str]) -> Traffic {
        let mut command = Command::new(env!("CARGO_BIN_EXE_workshop"));
        command
            .args(["traffic", "--json", "--url", gateway, "--registry-url", registry])
            .args(args)
            .current_dir(workspace_root())
            .env_remove("GATEWAY_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, objects) = mpsc::channel();
        read_lines(child.stdout.take().unwrap(), lines.clone(), Some(sender));
        read_lines(child.stderr.take().unwrap(), lines.clone(), None);
        Traffic { running: Running { child, lines }, objects, seen: Vec::new() }
    }

    /// Reads seconds until one satisfies `wanted`; returns it.
    fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.objects.recv_timeout(left) else {
                panic!("no second with {what}; the traffic said:\n{}", self.running.said());
            };
            let object: Value = serde_json::from_str(&line).unwrap();
            self.seen.push(object.clone());
            if wanted(&object) {
                return object;
            }
        }
    }
}

fn count(second: &Value, outcome: &str) -> u64 {
    second["outcomes"][outcome].as_u64().unwrap_or(0)
}

fn circuit_state(second: &Value, instance: &str) -> Option<String> {
    let circuits = second["circuits"].as_array()?;
    let circuit = circuits.iter().find(|c| c["instance"] == instance)?;
    Some(circuit["state"].as_str()?.to_string())
}

fn passing_instances(second: &Value, service: &str) -> usize {
    let instances = second["instances"].as_array().cloned().unwrap_or_default();
    instances.iter().filter(|i| i["service"] == service && i["check"] == "passing").count()
}

#[test]
fn step07_an_instance_killed_shows_its_502s_its_circuit_open_and_its_recovery() {
    let binary = step_binary("step07-circuit-breaker");
    let registry = service(&binary, "registry", &[], &[]);
    let registry_url = registry.url();
    let env = [("REGISTRY_URL", registry_url.as_str())];
    let service1 = service(&binary, "service1", &[], &env);
    let steady = service(&binary, "service2", &[], &env);
    // Checked once a minute: the registry does not notice its death, the
    // gateway's circuit does.
    let slow_check = ["--check-interval", "60s"];
    let mut doomed = service(&binary, "service2", &slow_check, &env);
    let short_pauses = ["--breaker-open-for", "1s", "--breaker-max-open-for", "2s"];
    let gateway = service(&binary, "gateway", &short_pauses, &env);
    let doomed_url = doomed.url();
    let (_, _) = (service1.url(), steady.url());

    let mut traffic = Traffic::start(
        &gateway.url(),
        &registry_url,
        &["--path", "/api/service2/", "--rate", "100", "--for", "5m"],
    );
    traffic.until("both instances of service2 passing, every call answered 200", |s| {
        passing_instances(s, "service2") == 2 && s["failed"] == 0 && count(s, "200") > 0
    });
    let steady_from = traffic.seen.len() - 1;
    let _ = doomed.child.kill();
    let _ = doomed.child.wait();

    let failed = traffic.until("a 502 from the killed instance", |s| count(s, "502") > 0);
    let detail = failed["problems"]["502"].as_str().unwrap_or_default();
    assert!(detail.contains(&doomed_url), "the 502 should name {doomed_url}: {failed}");
    traffic.until("its circuit open", |s| circuit_state(s, &doomed_url).as_deref() == Some("open"));

    let port = doomed_url.rsplit(':').next().unwrap();
    let mut command = Command::new(&binary);
    command.args(["service2", "--port", port]).args(slow_check).envs(env);
    let _restarted = Running::start(command);
    traffic.until("its circuit closed again, every call answered 200", |s| {
        circuit_state(s, &doomed_url).as_deref() == Some("closed")
            && s["failed"] == 0
            && count(s, "200") > 0
    });

    let without_200 = traffic.seen[steady_from..].iter().find(|s| count(s, "200") == 0);
    assert!(without_200.is_none(), "the other instance answers throughout: {without_200:?}");
}

#[test]
fn step10_under_writes_the_reports_lag_rises_then_falls_back_to_zero() {
    let binary = step_binary("step10-cqrs-reporting");
    let data = workspace_root().join("target").join("workshop-tests").join("traffic-step10");
    let _ = std::fs::remove_dir_all(&data);
    let registry = service(&binary, "registry", &[], &[]);
    let registry_url = registry.url();
    let data_dir = data.to_string_lossy().to_string();
    let env = [("REGISTRY_URL", registry_url.as_str()), ("DATA_DIR", &data_dir)];
    let users = service(&binary, "users", &[], &env);
    let accounts = service(&binary, "accounts", &[], &env);
    // Slower than the writes: a pause after each event applied.
    let slow = [env[0], env[1], ("REPORTS_APPLY_PAUSE", "50ms")];
    let reports = service(&binary, "reports", &[], &slow);
    let gateway = service(&binary, "gateway", &[], &env);
    let gateway_url = gateway.url();
    for (name, service) in [("users", &users), ("accounts", &accounts), ("reports", &reports)] {
        let port = service.url().rsplit(':').next().unwrap().to_string();
        registry.line_with(&format!("check service:{name}-127.0.0.1-{port} is now passing"));
    }

    let mut writes = Traffic::start(&gateway_url, &registry_url, &["--rate", "100", "--for", "4s"]);
    writes.until("the reports behind the accounts feed", |s| behind(s, "accounts") > 0);
    let mut reads = Traffic::start(
        &gateway_url,
        &registry_url,
        &["--path", "/api/reports/traffic", "--rate", "5", "--for", "5m"],
    );
    reads.until("the reports caught up with both feeds", |s| {
        behind(s, "accounts") == 0 && behind(s, "users") == 0
    });
}

/// How far the reports are behind a feed, as the traffic says (or -1).
fn behind(second: &Value, feed: &str) -> i64 {
    let feeds = second["feeds"].as_array().cloned().unwrap_or_default();
    let feed = feeds.iter().find(|f| f["feed"] == feed);
    feed.and_then(|f| f["behind"].as_i64()).unwrap_or(-1)
}
