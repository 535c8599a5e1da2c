//! Just enough of Chrome's DevTools protocol to read a page as it lives:
//! headless Chromium with a debugging port, and `Runtime.evaluate` sent
//! over the page's WebSocket.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::support::workspace_root;

/// How long Chromium may take to start, and a page to answer.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    port: u16,
}

impl Browser {
    /// Chromium, headless, on `url`, with a profile of its own.
    pub fn open(url: &str, profile: &str) -> Browser {
        let profile: PathBuf = workspace_root().join("target/workshop-tests").join(profile);
        if profile.exists() {
            fs::remove_dir_all(&profile).unwrap();
        }
        fs::create_dir_all(&profile).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1600,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromium: is it on PATH?");
        // Chromium writes the port it chose into the profile.
        let started = Instant::now();
        let port = loop {
            let written =
                fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
            if let Some(port) = written.lines().next().and_then(|line| line.parse().ok()) {
                break port;
            }
            assert!(started.elapsed() < PATIENCE, "chromium gave no debugging port");
            std::thread::sleep(Duration::from_millis(50));
        };
        Browser { child, port }
    }

    /// The value of a JavaScript expression in the page.
    pub fn evaluate(&self, expression: &str) -> Value {
        let list = format!("http://127.0.0.1:{}/json/list", self.port);
        let expression = expression.to_string();
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder().timeout(PATIENCE).finish();
            let targets: Value = client.get(&list).send().await.unwrap().json().await.unwrap();
            let page = targets.as_array().unwrap().iter().find(|target| target["type"] == "page");
            let socket_url = page.expect("a page")["webSocketDebuggerUrl"].as_str().unwrap();
            let (_, mut socket) =
                client.ws(socket_url).max_frame_size(16 << 20).connect().await.unwrap();
            let call = json!({
                "id": 1,
                "method": "Runtime.evaluate",
                "params": { "expression": expression, "returnByValue": true },
            });
            socket.send(ws::Message::Text(call.to_string().into())).await.unwrap();
            let answer = async {
                while let Some(frame) = socket.next().await {
                    if let Ok(ws::Frame::Text(text)) = frame {
                        let message: Value = serde_json::from_slice(&text).unwrap();
                        if message["id"] == 1 {
                            return message["result"]["result"]["value"].clone();
                        }
                    }
                }
                panic!("the page closed its socket")
            };
            actix_web::rt::time::timeout(PATIENCE, answer).await.expect("the page did not answer")
        })
    }

    /// Evaluates `expression` until `wanted` says yes of its value, for at
    /// most `patience`; the value, and how long it took to come.
    pub fn wait_for(
        &self,
        expression: &str,
        wanted: impl Fn(&Value) -> bool,
        patience: Duration,
    ) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let value = self.evaluate(expression);
            if wanted(&value) {
                return (value, started.elapsed());
            }
            assert!(
                started.elapsed() < patience,
                "the page still shows {value} after {patience:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
