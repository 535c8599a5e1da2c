//! `demo`: the original workshop's client, played through the gateway
//! against the running step. It sends the commands (create a user, open an
//! account, change the user's state, rename them, change the balance),
//! shows what each write service says, then reads the report until it has
//! caught up, and says how long that took: the lag of an eventually
//! consistent read model, measured.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::gateway::WORKSHOP_KEY;

/// The demo's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where the gateway answers
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:3001", value_parser = crate::http_url)]
    pub gateway_url: String,

    /// The gateway's API key
    #[arg(long, env = "GATEWAY_API_KEY", default_value = WORKSHOP_KEY, hide_env_values = true)]
    pub api_key: String,

    /// How long to wait for the report to catch up
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub patience: Duration,
}

/// Plays the scenario; exits 1 if a step fails or the report never
/// catches up.
pub fn run(options: Options) -> ExitCode {
    actix_web::rt::System::new().block_on(async move {
        match play(&options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(problem) => {
                println!("demo failed: {problem}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn play(options: &Options) -> Result<(), String> {
    let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    let call = |method: Method, path: String, body: Option<Value>| {
        let request = client
            .request(method.clone(), format!("{}/api{path}", options.gateway_url))
            .bearer_auth(&options.api_key);
        async move {
            let sent = match &body {
                Some(body) => request.send_json(body).await,
                None => request.send().await,
            };
            let mut response = sent.map_err(|error| {
                format!("{method} {path}: {error}; is the step running (cargo run -p step10-cqrs-reporting)?")
            })?;
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            let status = response.status();
            Ok::<_, String>((status, answer))
        }
    };
    // A user of its own at each run, so that the demo can run again.
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_millis());
    let user = format!("somchai-{millis}");
    let account = format!("{user}-main");
    let commands = [
        (Method::POST, "/users/".to_string(), json!({ "id": user, "name": "Somchai" })),
        (Method::POST, "/accounts/".to_string(), json!({ "id": account, "user_id": user })),
        (Method::PATCH, format!("/users/{user}"), json!({ "state": "suspended" })),
        (Method::PATCH, format!("/users/{user}"), json!({ "name": "Somchai Jaidee" })),
        (Method::PATCH, format!("/accounts/{account}"), json!({ "balance": 1500 })),
    ];
    println!("Commands, through the gateway at {}:", options.gateway_url);
    for (method, path, body) in commands {
        let (status, _) = call(method.clone(), path.clone(), Some(body.clone())).await?;
        println!("  {method} /api{path} {body} -> {status}");
        if !status.is_success() {
            return Err(format!("{method} /api{path} answered {status}"));
        }
    }
    let written = Instant::now();

    // The report, read again and again from the moment the last command
    // was answered, until it shows what the commands did.
    let caught_up = |report: &Value| {
        report["name"] == "Somchai Jaidee"
            && report["state"] == "suspended"
            && report["balance"] == 1500
    };
    let mut reads = 0;
    let (lag, status, report) = loop {
        let (status, report) = call(Method::GET, format!("/reports/{user}"), None).await?;
        reads += 1;
        if status.is_success() && caught_up(&report) {
            break (written.elapsed(), status, report);
        }
        if written.elapsed() > options.patience {
            return Err(format!(
                "the report had not caught up after {:?}: {status} {report}; is the reports service running?",
                options.patience
            ));
        }
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    };

    println!("\nEach service's own view:");
    for path in [format!("/users/{user}"), format!("/accounts/{account}")] {
        let (status, answer) = call(Method::GET, path.clone(), None).await?;
        println!("  GET /api{path} -> {status} {answer}");
    }
    println!("\nThe report, built by the reports service from both event feeds:");
    println!("  GET /api/reports/{user} -> {status} {report}");
    let reads = if reads == 1 { "1 read".to_string() } else { format!("{reads} reads") };
    println!("\nThe report caught up {lag:.1?} after the last command was answered ({reads}).");
    Ok(())
}
