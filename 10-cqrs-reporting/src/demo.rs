//! `demo`: the original workshop's client, played through the gateway of
//! a running step: the commands (create a user, open an account, suspend
//! and rename the user, set the balance), then the report, read until it
//! has caught up, and how long that took: eventual consistency, measured.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::platform;

/// The demo's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where the gateway answers
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:3001", value_parser = platform::http_url)]
    pub gateway_url: String,

    /// The gateway's API key
    #[arg(long, env = "GATEWAY_API_KEY", default_value = crate::gateway::WORKSHOP_KEY, hide_env_values = true)]
    pub api_key: String,
}

pub fn run(options: Options) -> ExitCode {
    let played = actix_web::rt::System::new().block_on(play(options));
    played.map_or_else(
        |problem| {
            println!("demo failed: {problem}");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    )
}

async fn play(options: Options) -> Result<(), String> {
    let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    let call = async |method: &str, path: &str, body: Option<Value>| {
        let url = format!("{}/api{path}", options.gateway_url);
        let request = client.request(method.parse().unwrap(), &url).bearer_auth(&options.api_key);
        let sent = match &body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response =
            sent.map_err(|error| format!("{method} {url}: {error}; is the step running?"))?;
        let answer = response.json::<Value>().await.unwrap_or_default();
        if let Some(body) = body {
            println!("{method} /api{path} {body} -> {}", response.status());
        }
        match response.status().is_success() {
            true => Ok(answer),
            false => Err(format!("{method} /api{path} answered {}", response.status())),
        }
    };
    // A user of its own at each run, so that the demo can run again.
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_millis());
    let (user, account) = (format!("somchai-{millis}"), format!("somchai-{millis}-main"));
    call("POST", "/users/", Some(json!({ "id": user, "name": "Somchai" }))).await?;
    call("POST", "/accounts/", Some(json!({ "id": account, "user_id": user }))).await?;
    call("PATCH", &format!("/users/{user}"), Some(json!({ "state": "suspended" }))).await?;
    call("PATCH", &format!("/users/{user}"), Some(json!({ "name": "Somchai Jaidee" }))).await?;
    call("PATCH", &format!("/accounts/{account}"), Some(json!({ "balance": 1500 }))).await?;
    let written = Instant::now();
    // The report, read again from the moment the last command was answered.
    while written.elapsed() < Duration::from_secs(10) {
        let report = call("GET", &format!("/reports/{user}"), None).await.unwrap_or_default();
        if report["events_applied"] == 5 {
            println!("GET /api/reports/{user} -> {report}");
            println!("The report caught up {:.1?} after the last command.", written.elapsed());
            return Ok(());
        }
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    Err("the report did not catch up within 10s; is the reports service running?".to_string())
}
