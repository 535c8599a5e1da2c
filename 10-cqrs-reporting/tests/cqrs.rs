//! CQRS as a client and an operator see it: commands through the write
//! services, their event feeds, and the reports that follow them, each
//! service a process of the real binary with a database in a folder of the
//! test's own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step10_cqrs_reporting::gateway::WORKSHOP_KEY;
use tokio::process::Child;
use tokio::sync::mpsc;

use binary::{free_port, spawn};

mod binary;

/// The longest any test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// A folder for the databases of one test, gone when it ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new(test: &str) -> DataDir {
        let folder =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", free_port()));
        DataDir(folder)
    }

    fn env(&self) -> (&'static str, String) {
        ("DATA_DIR", self.0.display().to_string())
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP answer: status and JSON body.
struct Answer {
    status: StatusCode,
    body: Value,
}

async fn call(method: &str, url: &str, body: Option<Value>) -> Answer {
    try_call(method, url, body).await.unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

/// The answer, or why there is none (nothing listens there yet, say).
async fn try_call(method: &str, url: &str, body: Option<Value>) -> Result<Answer, String> {
    let client = awc::Client::default();
    let request = client.request(method.parse().unwrap(), url).bearer_auth(WORKSHOP_KEY);
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|error| error.to_string())?;
    let body = response.json().limit(1 << 20).await.unwrap_or(Value::Null);
    Ok(Answer { status: response.status(), body })
}

/// Sends `raw` as the body, with `content_type`, for the tests of bad input.
async fn send_raw(method: &str, url: &str, content_type: Option<&str>, raw: &str) -> Answer {
    let client = awc::Client::default();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(content_type) = content_type {
        request = request.insert_header(("content-type", content_type));
    }
    let mut response = request.send_body(raw.to_string()).await.unwrap();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status: response.status(), body }
}

/// Waits until GET `url` answers a body for which `done` holds.
async fn wait_for(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = try_call("GET", url, None).await;
        match &answer {
            Ok(answer) if answer.status == StatusCode::OK && done(&answer.body) => {
                return answer.body.clone();
            }
            Ok(answer) => assert!(Instant::now() < deadline, "{url} answered: {}", answer.body),
            Err(error) => assert!(Instant::now() < deadline, "{url} never answered: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a line of output that contains `text`.
async fn line_with(lines: &mut mpsc::UnboundedReceiver<String>, text: &str) -> String {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    found.ok().flatten().unwrap_or_else(|| panic!("no line with {text:?}"))
}

/// Stops a service as Ctrl-C or a process manager would (SIGTERM on Unix),
/// and waits until it has.
async fn stop(child: &mut Child) {
    #[cfg(unix)]
    {
        let pid = child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
    }
    #[cfg(not(unix))]
    child.start_kill().unwrap();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await;
    assert!(stopped.is_ok_and(|status| status.is_ok()), "it did not stop");
}

/// Starts a write service, ready once it has registered.
async fn start_service(data: &DataDir, registry: &str, service: &str, port: u16) -> Child {
    let env = [data.env(), ("REGISTRY_URL", registry.to_string())];
    let (process, mut lines) = spawn(&[service, "--port", &port.to_string()], &env);
    line_with(&mut lines, "registered with the registry").await;
    process
}

/// The registry, users and accounts, each a process of its own; reports
/// started and stopped by the tests.
struct Services {
    data: DataDir,
    registry: String,
    users: String,
    users_process: Child,
    accounts: String,
    _running: Vec<Child>,
}

impl Services {
    async fn start(test: &str) -> Services {
        let data = DataDir::new(test);
        let (registry_port, users_port, accounts_port) = (free_port(), free_port(), free_port());
        let registry = format!("http://127.0.0.1:{registry_port}");
        let (registry_process, mut lines) =
            spawn(&["registry", "--port", &registry_port.to_string()], &[]);
        line_with(&mut lines, "listening on").await;
        let users_process = start_service(&data, &registry, "users", users_port).await;
        let accounts_process = start_service(&data, &registry, "accounts", accounts_port).await;
        // accounts asks users through the registry: ready once users passes.
        let passing = format!("{registry}/v1/health/service/users?passing");
        wait_for(&passing, |body| body.as_array().is_some_and(|a| !a.is_empty())).await;
        Services {
            data,
            registry,
            users: format!("http://127.0.0.1:{users_port}"),
            users_process,
            accounts: format!("http://127.0.0.1:{accounts_port}"),
            _running: vec![registry_process, accounts_process],
        }
    }

    /// Stops users, deletes its database, and starts it again on the same
    /// port: a new, empty feed where the old one was.
    async fn replace_the_users_database(&mut self) {
        stop(&mut self.users_process).await;
        for file in ["users.sqlite", "users.sqlite-wal", "users.sqlite-shm"] {
            let _ = std::fs::remove_file(self.data.0.join(file));
        }
        let port = self.users.rsplit(':').next().unwrap().parse().unwrap();
        self.users_process = start_service(&self.data, &self.registry, "users", port).await;
    }

    /// The reports service, on `port`, with `env` added.
    fn reports(
        &self,
        port: u16,
        env: &[(&str, String)],
    ) -> (Child, mpsc::UnboundedReceiver<String>) {
        let mut all = vec![self.data.env(), ("REGISTRY_URL", self.registry.clone())];
        all.extend(env.iter().cloned());
        spawn(&["reports", "--port", &port.to_string()], &all)
    }

    /// The last `seq` of a write service's feed.
    async fn last_seq(&self, service_url: &str) -> i64 {
        let page = call("GET", &format!("{service_url}/events?after=0&limit=1"), None).await;
        page.body["last_seq"].as_i64().unwrap()
    }
}

#[actix_web::test]
async fn the_feed_serves_events_in_order_a_page_at_a_time_and_waits_for_new_ones() {
    let services = Services::start("feed").await;
    let users = &services.users;
    for (i, name) in ["Ann", "Bo", "Cy", "Di", "Ed"].iter().enumerate() {
        let created = call(
            "POST",
            &format!("{users}/"),
            Some(json!({ "id": format!("u{i}"), "name": name })),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let page = call("GET", &format!("{users}/events?after=0&limit=2"), None).await;
    let seqs = |page: &Value| -> Vec<i64> {
        page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    assert_eq!(seqs(&page.body), [1, 2]);
    assert_eq!(page.body["last_seq"], 5);
    assert_eq!(page.body["events"][0]["type"], "user_created");
    assert_eq!(page.body["events"][0]["subject"], "u0");
    assert_eq!(page.body["events"][0]["data"]["name"], "Ann");
    // Every page says which history it is of: the epoch of users' database.
    let epoch = page.body["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|epoch| !epoch.is_empty()), "{}", page.body);
    let page = call("GET", &format!("{users}/events?after=2&limit=2"), None).await;
    assert_eq!(seqs(&page.body), [3, 4]);
    assert_eq!(page.body["epoch"], epoch);
    let page = call("GET", &format!("{users}/events?after=4"), None).await;
    assert_eq!(seqs(&page.body), [5]);
    // Nothing new, no wait: an empty page at once.
    let page = call("GET", &format!("{users}/events?after=5"), None).await;
    assert_eq!((seqs(&page.body), page.body["last_seq"].clone()), (vec![], json!(5)));

    // A follower waiting for what comes after 5 gets it when it is written.
    let long_poll = format!("{users}/events?after=5&wait=20s");
    let waiting = call("GET", &long_poll, None);
    let write =
        async { call("PATCH", &format!("{users}/u4"), Some(json!({ "name": "Eddie" }))).await };
    let (page, written) = tokio::join!(waiting, write);
    assert_eq!(written.status, StatusCode::OK);
    assert_eq!(seqs(&page.body), [6]);
    assert_eq!(page.body["events"][0]["type"], "user_changed");
    assert_eq!(page.body["events"][0]["data"]["name"], "Eddie");

    for query in
        ["after=-1", "after=abc", "limit=0", "limit=5000", "wait=2h", "wait=soon", "from=3"]
    {
        let answer = call("GET", &format!("{users}/events?{query}"), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.body);
        assert_eq!(answer.body["status"], 400, "{query}: problem+json, not {}", answer.body);
    }
}

#[actix_web::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let services = Services::start("bad-input").await;
    let (users, accounts) = (&services.users, &services.accounts);
    call("POST", &format!("{users}/"), Some(json!({ "id": "ann", "name": "Ann" }))).await;
    call("POST", &format!("{accounts}/"), Some(json!({ "id": "ann-1", "user_id": "ann" }))).await;
    let before = (services.last_seq(users).await, services.last_seq(accounts).await);
    assert_eq!(before, (1, 1));

    let json = Some("application/json");
    let bad = [
        // (method, url, content type, body, status, words the detail must hold)
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "bo", "name": "Bo""#,
            400,
            "not what is expected",
        ),
        ("POST", format!("{users}/"), json, r#"{"id": "bo"}"#, 400, "missing field `name`"),
        ("POST", format!("{users}/"), json, r#"{"id": "bo", "name": 5}"#, 400, "invalid type"),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "bo", "name": "Bo", "age": 3}"#,
            400,
            "unknown field `age`",
        ),
        (
            "POST",
            format!("{users}/"),
            None,
            r#"{"id": "bo", "name": "Bo"}"#,
            400,
            "Content-Type: application/json",
        ),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "b o", "name": "Bo"}"#,
            400,
            "1 to 64 letters",
        ),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "events", "name": "Bo"}"#,
            400,
            "serves /events itself",
        ),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "bo", "name": "  "}"#,
            400,
            "1 to 100 characters",
        ),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "bo", "name": "Bo", "state": "asleep"}"#,
            400,
            "not a state",
        ),
        (
            "POST",
            format!("{users}/"),
            json,
            r#"{"id": "ann", "name": "Another Ann"}"#,
            409,
            "exists already",
        ),
        (
            "PATCH",
            format!("{users}/nobody"),
            json,
            r#"{"name": "X"}"#,
            404,
            "no user has the id nobody",
        ),
        ("PATCH", format!("{users}/ann"), json, r#"{}"#, 400, "nothing to change"),
        ("PATCH", format!("{users}/ann"), json, r#"{"state": "gone"}"#, 400, "not a state"),
        (
            "POST",
            format!("{accounts}/"),
            json,
            r#"{"id": "x-1", "user_id": "nobody"}"#,
            422,
            "create the user first",
        ),
        (
            "POST",
            format!("{accounts}/"),
            json,
            r#"{"id": "ann-1", "user_id": "ann"}"#,
            409,
            "exists already",
        ),
        (
            "POST",
            format!("{accounts}/"),
            json,
            r#"{"id": "ann-2", "user_id": "ann", "balance": "lots"}"#,
            400,
            "invalid type",
        ),
        (
            "POST",
            format!("{accounts}/"),
            json,
            r#"{"id": "ann-2", "user_id": "ann", "balance": 1.5}"#,
            400,
            "invalid type",
        ),
        (
            "PATCH",
            format!("{accounts}/nothing"),
            json,
            r#"{"balance": 3}"#,
            404,
            "no account has the id nothing",
        ),
        ("PATCH", format!("{accounts}/ann-1"), json, r#"{"balance": null}"#, 400, "invalid type"),
        ("PATCH", format!("{accounts}/ann-1"), json, r#"{"balance": -5}"#, 400, "from 0 to"),
        (
            "PATCH",
            format!("{accounts}/ann-1"),
            json,
            r#"{"balance": 9223372036854775807}"#,
            400,
            "from 0 to",
        ),
        (
            "POST",
            format!("{accounts}/"),
            json,
            r#"{"id": "ann-2", "user_id": "ann", "balance": -1}"#,
            400,
            "from 0 to",
        ),
        ("DELETE", format!("{users}/ann"), json, "", 405, "GET, PATCH are"),
        ("PUT", format!("{accounts}/"), json, "{}", 405, "GET, POST are"),
        (
            "GET",
            format!("{users}/ann/accounts"),
            None,
            "",
            404,
            "nothing is served at /ann/accounts",
        ),
    ];
    for (method, url, content_type, body, status, words) in bad {
        let answer = send_raw(method, &url, content_type, body).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {url} {body}: {}", answer.body);
        assert_eq!(answer.body["status"], status, "problem+json: {}", answer.body);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{method} {url} {body}: {detail}");
    }

    let huge = format!(r#"{{"id": "bo", "name": "{}"}}"#, "B".repeat(100_000));
    let answer = send_raw("POST", &format!("{users}/"), json, &huge).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.body);

    // Nothing written: no event, and the data as it was.
    assert_eq!((services.last_seq(users).await, services.last_seq(accounts).await), before);
    let ann = call("GET", &format!("{users}/ann"), None).await;
    assert_eq!(
        (ann.body["name"].clone(), ann.body["state"].clone()),
        (json!("Ann"), json!("active"))
    );
    assert_eq!(call("GET", &format!("{users}/bo"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call("GET", &format!("{accounts}/ann-1"), None).await.body["balance"], 0);
}

/// The original workshop's scenario, straight to the services.
async fn play_scenario(services: &Services, user: &str) {
    let (users, accounts) = (&services.users, &services.accounts);
    let account = format!("{user}-main");
    let steps = [
        ("POST", format!("{users}/"), json!({ "id": user, "name": "Somchai" })),
        ("POST", format!("{accounts}/"), json!({ "id": account, "user_id": user })),
        ("PATCH", format!("{users}/{user}"), json!({ "state": "suspended" })),
        ("PATCH", format!("{users}/{user}"), json!({ "name": "Somchai Jaidee" })),
        ("PATCH", format!("{accounts}/{account}"), json!({ "balance": 1500 })),
    ];
    for (method, url, body) in steps {
        let answer = call(method, &url, Some(body)).await;
        assert!(answer.status.is_success(), "{method} {url}: {}", answer.body);
    }
}

#[actix_web::test]
async fn a_created_user_is_found_at_its_location_through_the_gateway_too() {
    let services = Services::start("location").await;
    let created = awc::Client::default()
        .post(format!("{}/", services.users))
        .send_json(&json!({ "id": "ann", "name": "Ann" }))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // Relative to the URL called: /ann here, /api/users/ann through the gateway.
    assert_eq!(created.headers().get("location").unwrap(), "ann");
}

#[actix_web::test]
async fn reports_say_so_when_a_feed_has_fewer_events_than_they_applied() {
    let services = Services::start("replaced").await;
    let port = free_port();
    let (_reports, _) = services.reports(port, &[]);
    call("POST", &format!("{}/", services.users), Some(json!({ "id": "ann", "name": "Ann" })))
        .await;
    call("POST", &format!("{}/", services.users), Some(json!({ "id": "bo", "name": "Bo" }))).await;
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_for_health(&health, StatusCode::OK, "applied events up to 2 of 2").await;

    // A second users service on a new, empty database, registered too:
    // one feed of two has fewer events than the reports applied.
    let other = DataDir::new("replaced-users");
    let env = [other.env(), ("REGISTRY_URL", services.registry.clone())];
    let (_users, mut lines) = spawn(&["users", "--port", &free_port().to_string()], &env);
    line_with(&mut lines, "registered with the registry").await;
    wait_for_health(&health, StatusCode::SERVICE_UNAVAILABLE, "was its database replaced?").await;
}

#[actix_web::test]
async fn reports_stop_following_a_feed_whose_database_was_replaced() {
    let mut services = Services::start("new-history").await;
    let port = free_port();
    let reports = format!("http://127.0.0.1:{port}");
    let (mut reports_process, _) = services.reports(port, &[]);
    for user in ["ann", "bo"] {
        call("POST", &format!("{}/", services.users), Some(json!({ "id": user, "name": user })))
            .await;
    }
    let health = format!("{reports}/healthz");
    wait_for_health(&health, StatusCode::OK, "applied events up to 2 of 2").await;

    // users starts again on an empty database, and its new feed soon goes
    // past the old position: events 1 to 5 of another history.
    services.replace_the_users_database().await;
    let new_users = ["cy", "di", "ed", "fay", "gus"];
    for user in new_users {
        let created = call(
            "POST",
            &format!("{}/", services.users),
            Some(json!({ "id": user, "name": user })),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }

    // Not applied on top of the old one as if it went on: the reports stop
    // following it, and say so, failing, until they are rebuilt.
    let stopped = StatusCode::SERVICE_UNAVAILABLE;
    let document = wait_for_health(&health, stopped, "was its database replaced?").await;
    let users_feed = &document["checks"]["feed:users"][0];
    assert_eq!(users_feed["status"], "fail", "{document}");
    let output = users_feed["output"].as_str().unwrap();
    assert!(output.contains("the users feed is of epoch"), "{output}");
    assert!(output.contains("reports.sqlite"), "{output}");
    assert_eq!(document["checks"]["feed:accounts"][0]["status"], "pass", "{document}");
    for user in new_users {
        let report = call("GET", &format!("{reports}/{user}"), None).await;
        assert_eq!(report.status, StatusCode::NOT_FOUND, "{user}: {}", report.body);
    }
    // Still so once the reports are restarted: they keep the epoch they follow.
    stop(&mut reports_process).await;
    let (_reports, _) = services.reports(port, &[]);
    wait_for_health(&health, stopped, "was its database replaced?").await;
    assert_eq!(call("GET", &format!("{reports}/cy"), None).await.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn a_feed_replaced_before_any_of_its_events_was_applied_is_followed() {
    let mut services = Services::start("new-history-empty").await;
    let port = free_port();
    let (_reports, _) = services.reports(port, &[]);
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_for_health(&health, StatusCode::OK, "applied events up to 0 of 0").await;

    // Nothing of the old history is in the reports: nothing to mix up.
    services.replace_the_users_database().await;
    call("POST", &format!("{}/", services.users), Some(json!({ "id": "ann", "name": "Ann" })))
        .await;
    wait_for(&format!("http://127.0.0.1:{port}/ann"), |r| r["name"] == "Ann").await;
    wait_for_health(&health, StatusCode::OK, "applied events up to 1 of 1").await;
}

#[actix_web::test]
async fn reports_from_before_epochs_adopt_the_epoch_of_the_feed_they_follow() {
    let services = Services::start("before-epochs").await;
    let users = &services.users;
    call("POST", &format!("{users}/"), Some(json!({ "id": "ann", "name": "Ann" }))).await;
    // A reports database as the version before epochs left it: ann applied.
    let old = rusqlite::Connection::open(services.data.0.join("reports.sqlite")).unwrap();
    old.execute_batch(
        "CREATE TABLE reports (user_id TEXT PRIMARY KEY, name TEXT, state TEXT,
             balance INTEGER NOT NULL DEFAULT 0, accounts INTEGER NOT NULL DEFAULT 0,
             events_applied INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
         CREATE TABLE report_accounts (account_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
             balance INTEGER NOT NULL);
         CREATE TABLE positions (feed TEXT PRIMARY KEY, seq INTEGER NOT NULL);
         INSERT INTO reports VALUES ('ann', 'Ann', 'active', 0, 0, 1, '2026-11-30T00:00:00Z');
         INSERT INTO positions VALUES ('users', 1);",
    )
    .unwrap();
    drop(old);

    let port = free_port();
    let (_reports, _) = services.reports(port, &[]);
    call("PATCH", &format!("{users}/ann"), Some(json!({ "name": "Ann B." }))).await;
    let report = wait_for(&format!("http://127.0.0.1:{port}/ann"), |r| r["name"] == "Ann B.").await;
    assert_eq!(report["events_applied"], 2, "ann's first event not applied again: {report}");
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_for_health(&health, StatusCode::OK, "applied events up to 2 of 2").await;
}

/// Waits until the health document at `url` answers `status` and holds
/// `text`; the document.
async fn wait_for_health(url: &str, status: StatusCode, text: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = try_call("GET", url, None).await;
        match answer {
            Ok(a) if a.status == status && a.body.to_string().contains(text) => return a.body,
            _ => assert!(Instant::now() < deadline, "{url} never said {status} {text:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn the_report_of_the_demo_scenario_has_the_name_state_and_balance() {
    let services = Services::start("scenario").await;
    let port = free_port();
    let (_reports, _) = services.reports(port, &[]);
    play_scenario(&services, "somchai").await;
    let report =
        wait_for(&format!("http://127.0.0.1:{port}/somchai"), |r| r["events_applied"] == 5).await;
    assert_eq!(report["name"], "Somchai Jaidee");
    assert_eq!(report["state"], "suspended");
    assert_eq!(report["balance"], 1500);
    assert_eq!(report["accounts"], 1);
    // The health document says how far each feed has been applied.
    let health = call("GET", &format!("http://127.0.0.1:{port}/healthz"), None).await;
    let checks = health.body["checks"].to_string();
    assert!(checks.contains("applied events up to 3 of 3: 0 behind"), "{checks}");
    assert!(checks.contains("applied events up to 2 of 2: 0 behind"), "{checks}");
    let unknown = call("GET", &format!("http://127.0.0.1:{port}/nobody"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn reports_stopped_while_writes_happen_catch_up_with_nothing_lost() {
    let services = Services::start("catch-up").await;
    let port = free_port();
    let report_url = format!("http://127.0.0.1:{port}/ann");
    let (mut reports, mut lines) = services.reports(port, &[]);
    line_with(&mut lines, "listening on").await;
    call("POST", &format!("{}/", services.users), Some(json!({ "id": "ann", "name": "Ann" })))
        .await;
    wait_for(&report_url, |r| r["events_applied"] == 1).await;

    // Stopped (as by Ctrl-C): the writes go on without it.
    stop(&mut reports).await;
    let accounts = &services.accounts;
    call("POST", &format!("{accounts}/"), Some(json!({ "id": "ann-1", "user_id": "ann" }))).await;
    for balance in 1..=20 {
        call("PATCH", &format!("{accounts}/ann-1"), Some(json!({ "balance": balance * 10 }))).await;
    }
    call("PATCH", &format!("{}/ann", services.users), Some(json!({ "name": "Ann B." }))).await;

    // Started again: it resumes where it stopped.
    let (_reports, _) = services.reports(port, &[]);
    let report = wait_for(&report_url, |r| r["events_applied"] == 23).await;
    assert_eq!((report["name"].clone(), report["balance"].clone()), (json!("Ann B."), json!(200)));
}

#[actix_web::test]
async fn reports_killed_in_the_middle_of_a_batch_apply_every_event_exactly_once() {
    let services = Services::start("killed").await;
    let accounts = &services.accounts;
    call("POST", &format!("{}/", services.users), Some(json!({ "id": "ann", "name": "Ann" })))
        .await;
    call("POST", &format!("{accounts}/"), Some(json!({ "id": "ann-1", "user_id": "ann" }))).await;
    for balance in 1..=60 {
        call("PATCH", &format!("{accounts}/ann-1"), Some(json!({ "balance": balance }))).await;
    }
    // Slowed down, in pages of 50: killed while it applies the first page.
    let port = free_port();
    let slow = [("REPORTS_BATCH", "50".to_string()), ("REPORTS_APPLY_PAUSE", "20ms".to_string())];
    let (mut reports, mut lines) = services.reports(port, &slow);
    line_with(&mut lines, "applying 50 events of the accounts feed, after event 0").await;
    reports.start_kill().unwrap();
    reports.wait().await.unwrap();

    // Started again at full speed: every event applied once, none twice.
    let (_reports, _) = services.reports(port, &[]);
    let report_url = format!("http://127.0.0.1:{port}/ann");
    let report = wait_for(&report_url, |r| r["balance"] == 60 && r["name"] == "Ann").await;
    assert_eq!(report["events_applied"], 62, "{report}");
}

#[actix_web::test]
async fn the_demo_plays_the_scenario_through_the_gateway_of_the_running_step() {
    let data = DataDir::new("demo");
    let ports: Vec<u16> = (0..7).map(|_| free_port()).collect();
    let env = [
        data.env(),
        ("REGISTRY_PORT", ports[0].to_string()),
        ("REGISTRY_URL", format!("http://127.0.0.1:{}", ports[0])),
        ("GATEWAY_PORT", ports[1].to_string()),
        ("SERVICE1_PORT", ports[2].to_string()),
        ("SERVICE2_PORT", ports[3].to_string()),
        ("USERS_PORT", ports[4].to_string()),
        ("ACCOUNTS_PORT", ports[5].to_string()),
        ("REPORTS_PORT", ports[6].to_string()),
    ];
    let (_step, _) = spawn(&[], &env);
    let gateway = format!("http://127.0.0.1:{}", ports[1]);
    // Ready when the gateway finds the three services.
    for service in ["users", "accounts", "reports"] {
        wait_for(&format!("{gateway}/api/{service}/"), |_| true).await;
    }

    let (mut demo, mut lines) = spawn(&["demo", "--gateway-url", &gateway], &[]);
    let status = tokio::time::timeout(PATIENCE, demo.wait()).await.unwrap().unwrap();
    let mut output = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, lines.recv()).await {
        output.push(line);
    }
    let output = output.join("\n");
    assert!(status.success(), "{output}");
    assert!(output.contains("-> 201 Created"), "{output}");
    assert!(output.contains(r#""name":"Somchai Jaidee""#), "{output}");
    assert!(output.contains("The report caught up"), "{output}");
}
