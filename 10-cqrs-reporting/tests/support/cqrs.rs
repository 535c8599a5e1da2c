//! The write services and the reports, each a process of the step's real
//! binary with a database in a folder of the test's own, as `cqrs.rs` and
//! `exercises.rs` drive them, and what they send them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::mpsc;

#[cfg(unix)]
use super::binary::send_signal;
use super::binary::{free_ports, lines_until, scratch_data_dir, spawn};
use super::{PATIENCE, request};

/// A folder for the databases of one test, gone when it ends.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(test: &str) -> DataDir {
        DataDir(scratch_data_dir(test))
    }

    pub fn env(&self) -> (&'static str, String) {
        ("DATA_DIR", self.0.display().to_string())
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `body` (JSON, unless `content_type` says otherwise) and answers
/// the status and the JSON body.
pub async fn send(method: &str, url: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = awc::Client::default().request(method.parse().unwrap(), url);
    if let Some(content_type) = content_type {
        request = request.insert_header(("content-type", content_type));
    }
    let mut response = request.send_body(body.to_string()).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or_default())
}

pub async fn call(method: &str, url: &str, body: Value) -> (u16, Value) {
    send(method, url, Some("application/json"), &body.to_string()).await
}

pub async fn get(url: &str) -> (u16, Value) {
    send("GET", url, None, "").await
}

/// Waits until GET `url` answers `status` with a body for which `done` holds.
pub async fn wait_for(url: &str, status: u16, done: impl Fn(&Value) -> bool) -> Value {
    let answered = poll_until(url, |answered, body| answered == status && done(body)).await;
    answered.unwrap_or_else(|last| panic!("{url} {last}"))
}

/// GETs `url` until `done` holds for the status and body it answers, for
/// as long as `PATIENCE`: the body, or the last answer in words, for a
/// failure to show.
pub async fn poll_until(url: &str, done: impl Fn(u16, &Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match request("GET", url).send().await {
            Ok(mut response) => {
                let body = response.json().await.unwrap_or_default();
                if done(response.status().as_u16(), &body) {
                    return Ok(body);
                }
                format!("answered {}: {body}", response.status())
            }
            Err(_) => "never answered".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the health document at `url` answers `status` and holds `text`.
pub async fn wait_for_health(url: &str, status: u16, text: &str) -> Value {
    wait_for(url, status, |document| document.to_string().contains(text)).await
}

/// Stops a service as Ctrl-C or a process manager would (SIGTERM on Unix),
/// and waits until it has.
pub async fn stop(child: &mut Child) {
    #[cfg(unix)]
    send_signal("TERM", child.id().expect("still running"));
    #[cfg(not(unix))]
    child.start_kill().unwrap();
    let stopped = tokio::time::timeout(PATIENCE, child.wait()).await;
    assert!(stopped.is_ok_and(|status| status.is_ok()), "it did not stop");
}

pub fn spawn_service(
    data: &DataDir,
    registry: &str,
    service: &str,
    port: u16,
    env: &[(&str, String)],
) -> (Child, mpsc::UnboundedReceiver<String>) {
    let mut all = vec![data.env(), ("REGISTRY_URL", registry.to_string())];
    all.extend(env.iter().cloned());
    spawn(&[service, "--port", &port.to_string()], &all)
}

/// Starts a write service, ready once it has registered.
pub async fn start_service(data: &DataDir, registry: &str, service: &str, port: u16) -> Child {
    let (process, mut lines) = spawn_service(data, registry, service, port, &[]);
    lines_until(&mut lines, "registered with the registry").await;
    process
}

/// The registry, users and accounts, each a process of its own; reports
/// started and stopped by the tests.
pub struct Services {
    pub data: DataDir,
    pub registry: String,
    pub users: String,
    pub users_process: Child,
    pub accounts: String,
    _running: Vec<Child>,
}

impl Services {
    pub async fn start(test: &str) -> Services {
        let data = DataDir::new(test);
        let [registry_port, users_port, accounts_port] = free_ports(3)[..] else { unreachable!() };
        let registry = format!("http://127.0.0.1:{registry_port}");
        let (registry_process, mut lines) =
            spawn(&["registry", "--port", &registry_port.to_string()], &[]);
        lines_until(&mut lines, "listening on").await;
        let users_process = start_service(&data, &registry, "users", users_port).await;
        let accounts_process = start_service(&data, &registry, "accounts", accounts_port).await;
        // accounts asks users through the registry: ready once it finds
        // users there (its health says so; it remembers a miss for a second).
        let accounts = format!("http://127.0.0.1:{accounts_port}");
        wait_for_health(&format!("{accounts}/healthz"), 200, "users at").await;
        Services {
            data,
            registry,
            users: format!("http://127.0.0.1:{users_port}"),
            users_process,
            accounts,
            _running: vec![registry_process, accounts_process],
        }
    }

    /// Reports on `port`, and their output.
    pub fn reports(
        &self,
        port: u16,
        env: &[(&str, String)],
    ) -> (Child, mpsc::UnboundedReceiver<String>) {
        spawn_service(&self.data, &self.registry, "reports", port, env)
    }

    pub async fn create_user(&self, id: &str, name: &str) {
        let url = format!("{}/", self.users);
        let (status, body) = call("POST", &url, json!({ "id": id, "name": name })).await;
        assert_eq!(status, 201, "{body}");
    }

    pub async fn open_account(&self, id: &str, user_id: &str, balance: i64) {
        let url = format!("{}/", self.accounts);
        let account = json!({ "id": id, "user_id": user_id, "balance": balance });
        let (status, body) = call("POST", &url, account).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Stops users, deletes its database, and starts it again on the same
    /// port: a new, empty feed where the old one was.
    pub async fn replace_the_users_database(&mut self) {
        stop(&mut self.users_process).await;
        for file in ["users.sqlite", "users.sqlite-wal", "users.sqlite-shm"] {
            let _ = std::fs::remove_file(self.data.0.join(file));
        }
        let port = self.users.rsplit(':').next().unwrap().parse().unwrap();
        self.users_process = start_service(&self.data, &self.registry, "users", port).await;
    }

    pub async fn last_seq(&self, service_url: &str) -> i64 {
        get(&format!("{service_url}/events?limit=1")).await.1["last_seq"].as_i64().unwrap()
    }
}
