//! `cargo workshop class`, `join` and `leave`, as an instructor and the
//! learners see them: the class's API as a laptop calls it (api.rs),
//! learners joining from scratch copies of the workspace and checking
//! (learners.rs), and the page in a real browser (page.rs, ignored without
//! chromium on PATH).

mod support;

#[path = "class/api.rs"]
mod api;
#[path = "class/devtools.rs"]
mod devtools;
#[path = "class/learners.rs"]
mod learners;
#[path = "class/page.rs"]
mod page;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use support::workspace_root;

/// How long a class may take to start, on a busy machine.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// Held by a test while its scratch copy builds and checks step 01: every
/// copy builds into one target directory, where the step's program is one
/// file (target/debug/step01-starter, which the checks run), so two copies
/// checking at once could each run the other's.
pub fn one_copy_checks_at_a_time() -> MutexGuard<'static, ()> {
    static CHECKING: Mutex<()> = Mutex::new(());
    CHECKING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A class, as the instructor starts it: the real program, on a free port,
/// kept in a file of the test's own.
pub struct Class {
    child: Child,
    /// The page's address, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The code, as shown: `KQXR-47MW`.
    pub code: String,
    pub state: PathBuf,
    /// Every line the class printed after its start message.
    said: mpsc::Receiver<String>,
}

impl Class {
    /// A new class, kept in a fresh folder named after the test.
    pub fn start(test: &str) -> Class {
        let folder = workspace_root().join("target/workshop-tests").join(format!("class-{test}"));
        if folder.exists() {
            fs::remove_dir_all(&folder).unwrap();
        }
        Class::resume(&folder.join("room.json"), &["--port", "0"])
    }

    /// The class kept in `state`, started with `args`.
    pub fn resume(state: &Path, args: &[&str]) -> Class {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workshop"))
            .arg("class")
            .args(args)
            .arg("--state")
            .arg(state)
            .current_dir(workspace_root())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (lines, said) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            stdout.lines().map_while(Result::ok).try_for_each(|line| lines.send(line))
        });
        let (mut url, mut code) = (None, None);
        let started = Instant::now();
        while url.is_none() || code.is_none() {
            let left = START_PATIENCE.saturating_sub(started.elapsed());
            let line = said.recv_timeout(left).expect("the class did not say where it is");
            if let Some(page) = line.strip_prefix("The class is open. Its page: ") {
                url = Some(page.trim().to_string());
            }
            if let Some(shown) = line.trim().strip_prefix("Class code: ") {
                code = Some(shown.to_string());
            }
        }
        Class { child, url: url.unwrap(), code: code.unwrap(), state: state.to_path_buf(), said }
    }

    /// Stops it as a laptop that goes to sleep or crashes would: at once.
    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.state.clone()
    }

    /// Waits until the class's file says what `wanted` looks for.
    pub fn wait_for_state(&self, wanted: impl Fn(&str) -> bool) {
        let started = Instant::now();
        while !wanted(&fs::read_to_string(&self.state).unwrap_or_default()) {
            assert!(started.elapsed() < START_PATIENCE, "the class's file was not written");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> String {
        self.url.rsplit(':').next().unwrap().to_string()
    }

    /// Waits for a line the class prints (a learner joining, leaving).
    pub fn wait_for_line(&self, what: &str) {
        let started = Instant::now();
        loop {
            let left = START_PATIENCE.saturating_sub(started.elapsed());
            match self.said.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => continue,
                Err(_) => panic!("the class printed no line with {what:?}"),
            }
        }
    }

    /// `PUT /api/learners/{seat}` with `code` (None: without one).
    pub fn report(&self, seat: &str, code: Option<&str>, body: impl Into<Vec<u8>>) -> Answer {
        let url = format!("{}/api/learners/{seat}", self.url);
        request("PUT", &url, code, Some(body.into()))
    }

    pub fn leave(&self, seat: &str, code: Option<&str>) -> Answer {
        request("DELETE", &format!("{}/api/learners/{seat}", self.url), code, None)
    }

    /// The board, as the page shows it now.
    pub fn board(&self) -> String {
        request("GET", &format!("{}/board", self.url), None, None).body
    }
}

impl Drop for Class {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    /// The problem's detail, for an error.
    pub fn detail(&self) -> String {
        let problem: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        problem["detail"].as_str().unwrap_or_default().to_string()
    }
}

pub fn request(method: &str, url: &str, code: Option<&str>, body: Option<Vec<u8>>) -> Answer {
    let (method, url, code) = (method.to_string(), url.to_string(), code.map(str::to_string));
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let mut request = client.request(method.parse().unwrap(), &url);
        if let Some(code) = code {
            request = request.bearer_auth(code);
        }
        let sent = match body {
            Some(body) => request.content_type("application/json").send_body(body).await,
            None => request.send().await,
        };
        let mut response = sent.unwrap_or_else(|error| panic!("{url}: {error}"));
        let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
        let content_type = response.headers().get("content-type");
        Answer {
            status: response.status().as_u16(),
            content_type: content_type
                .map(|value| value.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
}

/// A seat, as `join` draws one: 32 hexadecimal digits.
pub fn seat(number: u32) -> String {
    format!("{number:032x}")
}

/// A report's body: `name`, and one check of each (step, exercise, outcome, hint, seconds ago).
pub fn report(name: &str, checks: &[(&str, &str, &str, Option<&str>, u64)]) -> String {
    let checks: Vec<serde_json::Value> = checks
        .iter()
        .map(|(step, exercise, outcome, hint, seconds_ago)| {
            serde_json::json!({
                "step": step, "exercise": exercise, "outcome": outcome,
                "hint": hint, "seconds_ago": seconds_ago,
            })
        })
        .collect();
    serde_json::json!({ "name": name, "checks": checks }).to_string()
}
