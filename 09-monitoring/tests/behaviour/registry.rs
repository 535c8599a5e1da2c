//! The registry's HTTP API, as a Consul client sees it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, registration, start};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use step09_monitoring::{Registration, RegistrationOptions, registry};

fn start_registry() -> String {
    start_registry_with_acl_token(None)
}

fn start_registry_with_acl_token(acl_token: Option<&str>) -> String {
    let acl_token = acl_token.map(str::to_string);
    start(|listener| registry::server_with_acl_token(listener, acl_token))
}

/// What a call answered: status, X-Consul-Index if any, and the body.
struct Answer {
    status: StatusCode,
    index: Option<u64>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

async fn call(method: &str, url: &str, body: Option<Value>) -> Answer {
    let request = awc::Client::new().request(method.parse().unwrap(), url);
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut response = sent.unwrap();
    let index = response
        .headers()
        .get("x-consul-index")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    let body = response.body().limit(1 << 20).await.unwrap();
    Answer { status: response.status(), index, body: String::from_utf8(body.to_vec()).unwrap() }
}

async fn register(registry: &str, registration: Value) -> Answer {
    call("PUT", &format!("{registry}/v1/agent/service/register"), Some(registration)).await
}

async fn health(registry: &str, query: &str) -> Answer {
    call("GET", &format!("{registry}/v1/health/service/{query}"), None).await
}

/// Waits until `health(query)` answers a list of `expected` entries.
async fn wait_for_entries(registry: &str, query: &str, expected: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let entries = health(registry, query).await.json();
        if entries.as_array().unwrap().len() == expected {
            return entries;
        }
        assert!(Instant::now() < deadline, "{query}: never {expected} entries; last: {entries}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn service2(port: u16, check: Value) -> Value {
    json!({
        "Name": "service2",
        "ID": format!("service2-{port}"),
        "Address": "127.0.0.1",
        "Port": port,
        "Check": check,
    })
}

#[actix_web::test]
async fn a_registered_instance_is_critical_until_its_first_heartbeat() {
    let registry = start_registry();
    assert_eq!(
        register(&registry, service2(3003, json!({ "TTL": "10s" }))).await.status,
        StatusCode::OK
    );

    let entries = health(&registry, "service2").await.json();
    assert_eq!(entries[0]["Service"]["ID"], "service2-3003");
    assert_eq!(entries[0]["Service"]["Address"], "127.0.0.1");
    assert_eq!(entries[0]["Service"]["Port"], 3003);
    assert_eq!(entries[0]["Node"]["Address"], "127.0.0.1");
    assert_eq!(entries[0]["Checks"][0]["CheckID"], "service:service2-3003");
    assert_eq!(entries[0]["Checks"][0]["Name"], "Service 'service2' check");
    assert_eq!(entries[0]["Checks"][0]["Status"], "critical");
    assert_eq!(health(&registry, "service2?passing").await.json(), json!([]));

    let pass =
        call("PUT", &format!("{registry}/v1/agent/check/pass/service:service2-3003?note=ok"), None)
            .await;
    assert_eq!(pass.status, StatusCode::OK);
    let entries = health(&registry, "service2?passing").await.json();
    assert_eq!(entries[0]["Checks"][0]["Status"], "passing");
    assert_eq!(entries[0]["Checks"][0]["Output"], "ok");
}

#[actix_web::test]
async fn keys_are_matched_whatever_their_case_as_consul_clients_send_them() {
    let registry = start_registry();
    // As py-consul sends it: lowercase keys, the check in a `checks` array.
    let registration = json!({
        "name": "service2", "id": "s2-a", "address": "127.0.0.1", "port": 3003,
        "checks": [{ "ttl": "10s", "status": "passing", "deregister_critical_service_after": "1m" }],
    });
    assert_eq!(register(&registry, registration).await.status, StatusCode::OK);
    let entries = health(&registry, "service2?passing=1").await.json();
    assert_eq!(entries[0]["Service"]["ID"], "s2-a");
    assert_eq!(entries[0]["Checks"][0]["CheckID"], "service:s2-a");
}

#[actix_web::test]
async fn passing_leaves_out_instances_that_do_not_pass() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s", "Status": "passing" }))).await;
    register(&registry, service2(2, json!({ "TTL": "10s", "Status": "warning" }))).await;
    register(&registry, service2(3, json!({ "TTL": "10s", "Status": "passing" }))).await;

    let ids = |entries: Value| -> Vec<String> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(health(&registry, "service2").await.json()),
        ["service2-1", "service2-2", "service2-3"]
    );
    // A warning is not passing.
    assert_eq!(
        ids(health(&registry, "service2?passing").await.json()),
        ["service2-1", "service2-3"]
    );
    assert_eq!(health(&registry, "service2?passing=maybe").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(health(&registry, "nosuchservice").await.json(), json!([]));
}

#[actix_web::test]
async fn the_catalog_lists_every_service_registered() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    let mut service1 = service2(2, json!({ "TTL": "10s" }));
    service1["Name"] = json!("service1");
    service1["ID"] = json!("service1-2");
    register(&registry, service1).await;

    let services = call("GET", &format!("{registry}/v1/catalog/services"), None).await;
    assert!(services.index.is_some());
    assert_eq!(services.json(), json!({ "service1": [], "service2": [] }));
}

#[actix_web::test]
async fn deregistration_removes_the_instance_and_an_unknown_id_is_a_404() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    let gone =
        call("PUT", &format!("{registry}/v1/agent/service/deregister/service2-1"), None).await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(health(&registry, "service2").await.json(), json!([]));

    let unknown =
        call("PUT", &format!("{registry}/v1/agent/service/deregister/service2"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.body,
        "Unknown service ID \"service2\". Ensure that the service ID is passed, not the service name."
    );
}

#[actix_web::test]
async fn check_reports_set_the_status_and_an_unknown_check_is_a_404() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s", "CheckID": "alive" }))).await;
    let status = |entries: Value| entries[0]["Checks"][0]["Status"].as_str().unwrap().to_string();

    call("PUT", &format!("{registry}/v1/agent/check/warn/alive"), None).await;
    assert_eq!(status(health(&registry, "service2").await.json()), "warning");
    call("PUT", &format!("{registry}/v1/agent/check/fail/alive"), None).await;
    assert_eq!(status(health(&registry, "service2").await.json()), "critical");
    let passed =
        call("PUT", &format!("{registry}/v1/agent/check/pass/alive?note=all%20good"), None).await;
    assert_eq!(passed.status, StatusCode::OK);
    let entries = health(&registry, "service2").await.json();
    assert_eq!(status(entries.clone()), "passing");
    assert_eq!(entries[0]["Checks"][0]["Output"], "all good");

    let unknown = call("PUT", &format!("{registry}/v1/agent/check/pass/nope"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.starts_with("Unknown check ID \"nope\""), "{}", unknown.body);

    let wrong = call("PUT", &format!("{registry}/v1/agent/check/fine/alive"), None).await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn bad_registrations_are_a_400_with_a_plain_message() {
    let registry = start_registry();
    let cases = [
        (json!({ "ID": "x" }), "Missing service name"),
        (json!({ "Name": "s", "Address": "0.0.0.0" }), "Invalid service address"),
        (
            json!({ "Name": "s", "Check": { "TTL": "10s", "Interval": "10s", "HTTP": "http://x" } }),
            "Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            json!({ "Name": "s", "Check": { "TTL": "0s" } }),
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            json!({ "Name": "s", "Check": { "TTL": "10s", "Status": "fine" } }),
            "Invalid check status: 'fine'",
        ),
    ];
    for (registration, expected) in cases {
        let answer = register(&registry, registration.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{registration}");
        assert_eq!(answer.body, expected, "{registration}");
    }
    let not_json = awc::Client::new()
        .put(format!("{registry}/v1/agent/service/register"))
        .send_body("{not json")
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(health(&registry, "s").await.json(), json!([]), "nothing was registered");
}

#[actix_web::test]
async fn a_wrong_method_is_a_405_with_allow() {
    let registry = start_registry();
    let answer = call("GET", &format!("{registry}/v1/agent/service/register"), None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    let response =
        awc::Client::new().post(format!("{registry}/v1/health/service/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers().get("allow").unwrap(), "GET");
}

#[actix_web::test]
async fn the_index_comes_from_the_clock_and_grows_with_every_visible_change() {
    let registry = start_registry();
    let first = health(&registry, "service2").await.index.unwrap();
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(first >= since_epoch.as_millis() as u64 - 60_000, "not seeded from the clock: {first}");
    assert_eq!(health(&registry, "service2").await.index.unwrap(), first, "a read changes nothing");

    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    let registered = health(&registry, "service2").await.index.unwrap();
    assert!(registered > first);
    call("PUT", &format!("{registry}/v1/agent/check/pass/service:service2-1"), None).await;
    let passed = health(&registry, "service2").await.index.unwrap();
    assert!(passed > registered, "a status change is a change");
    call("PUT", &format!("{registry}/v1/agent/service/deregister/service2-1"), None).await;
    assert!(health(&registry, "service2").await.index.unwrap() > passed);
}

#[actix_web::test]
async fn a_ttl_that_runs_out_makes_the_check_critical() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "300ms", "Status": "passing" }))).await;
    call("PUT", &format!("{registry}/v1/agent/check/pass/service:service2-1?note=alive"), None)
        .await;
    let entries = wait_for_entries(&registry, "service2?passing", 0).await;
    assert_eq!(entries, json!([]));
    let check = &health(&registry, "service2").await.json()[0]["Checks"][0];
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["Output"], "TTL expired (last output: alive)");
}

#[actix_web::test]
async fn an_instance_critical_for_too_long_is_removed() {
    let registry = start_registry();
    let check = json!({ "TTL": "10s", "DeregisterCriticalServiceAfter": "300ms" });
    register(&registry, service2(1, check)).await;
    wait_for_entries(&registry, "service2", 0).await;
    let services = call("GET", &format!("{registry}/v1/catalog/services"), None).await.json();
    assert_eq!(services, json!({}));
}

#[actix_web::test]
async fn registering_again_keeps_the_checks_status() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    call("PUT", &format!("{registry}/v1/agent/check/pass/service:service2-1"), None).await;
    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    assert_eq!(health(&registry, "service2?passing").await.json().as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn the_dashboard_shows_a_card_per_instance_with_each_status_as_a_word_and_a_colour() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s", "Status": "passing" }))).await;
    register(&registry, service2(2, json!({ "TTL": "10s", "Status": "warning" }))).await;
    register(&registry, service2(3, json!({ "TTL": "10s" }))).await;
    let mut strange = service2(4, json!({ "TTL": "10s" }));
    strange["ID"] = json!("<script>alert(1)</script>");
    register(&registry, strange).await;
    let note = "%7B%22status%22:%22pass%22%7D"; // {"status":"pass"}
    let path = format!("{registry}/v1/agent/check/pass/service:service2-1?note={note}");
    assert_eq!(call("PUT", &path, None).await.status, StatusCode::OK);

    let mut response = awc::Client::new().get(&registry).send().await.unwrap();
    assert_eq!(response.headers().get("content-type").unwrap(), "text/html; charset=utf-8");
    let page = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("<h2>service2</h2>"), "grouped by service: {page}");
    let card =
        "<article class=\"passing\">\n<h3>service2-1</h3>\n<p class=\"address\">127.0.0.1:1</p>";
    assert!(page.contains(card), "{page}");
    for status in ["passing", "warning", "critical"] {
        let check =
            format!("<div class=\"check {status}\">\n<p><span class=\"status\">{status}</span>");
        assert!(page.contains(&check), "{status}, as a word and a colour: {page}");
    }
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "ids are escaped: {page}");
    assert!(!page.contains("<script>alert"), "{page}");
    let output = "<pre>{&quot;status&quot;:&quot;pass&quot;}</pre></details>";
    assert!(page.contains(output), "the output, escaped and folded: {page}");
    assert!(!page.contains("{\"") && !page.contains("<table"), "no raw JSON, no table: {page}");
    assert!(page.contains("fetch(\"dashboard/instances\""), "it refreshes itself: {page}");

    let cards = call("GET", &format!("{registry}/dashboard/instances"), None).await.body;
    assert!(cards.contains(card) && !cards.contains("<html"), "the cards alone: {cards}");
}

/// Runs the page's script in a real browser for a few (virtual) seconds.
#[actix_web::test]
#[ignore = "needs chromium on PATH"]
async fn in_a_browser_the_dashboard_refreshes_itself() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s", "Status": "passing" }))).await;
    let profile = std::env::temp_dir().join(format!("dashboard-test-{}", std::process::id()));
    let browser = tokio::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(["--disable-background-networking", "--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&registry)
        .kill_on_drop(true)
        .output();
    let dom = actix_web::rt::time::timeout(PATIENCE, browser).await.unwrap().unwrap().stdout;
    let _ = std::fs::remove_dir_all(profile);
    let dom = String::from_utf8_lossy(&dom);
    let refreshed = "<p id=\"refresh\">Refreshed at ";
    assert!(dom.contains(refreshed), "the script fetched the cards again: {dom}");
    assert!(dom.contains("<h3>service2-1</h3>"), "{dom}");
}

#[actix_web::test]
async fn a_duration_too_long_is_a_400_and_the_registry_keeps_serving() {
    let registry = start_registry();
    let cases = [
        (json!({ "TTL": "1000000000h" }), "TTL"),
        (json!({ "TTL": "500000000000000000s" }), "TTL"),
        (json!({ "TTL": "10000000000000000000s" }), "TTL"),
        (json!({ "TTL": u64::MAX }), "TTL"),
        (
            json!({ "HTTP": "http://127.0.0.1:1/healthz", "Interval": "500000000000000000s" }),
            "Interval",
        ),
        (json!({ "HTTP": "http://127.0.0.1:1/healthz", "Interval": "1ms" }), "Interval"),
        (
            json!({ "HTTP": "http://127.0.0.1:1/healthz", "Interval": "1s", "Timeout": "1000000000h" }),
            "Timeout",
        ),
        (
            json!({ "TTL": "10s", "DeregisterCriticalServiceAfter": "1000000000h" }),
            "DeregisterCriticalServiceAfter",
        ),
    ];
    for (check, field) in cases {
        let answer = register(&registry, service2(1, check.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{check}: {}", answer.body);
        assert!(answer.body.contains(field), "{check}: {}", answer.body);
    }
    let too_long = register(&registry, service2(1, json!({ "TTL": "1000000000h" }))).await;
    assert_eq!(too_long.body, r#"Invalid check: TTL must be at most 1day, not "1000000000h""#);
    let check = json!({ "HTTP": "http://127.0.0.1:1/healthz", "Interval": "1ms" });
    let too_short = register(&registry, service2(1, check)).await;
    assert_eq!(too_short.body, r#"Invalid check: Interval must be from 100ms to 1day, not "1ms""#);
    assert_eq!(health(&registry, "service2").await.json(), json!([]), "nothing was registered");
    assert_eq!(
        register(&registry, service2(1, json!({ "TTL": "10s" }))).await.status,
        StatusCode::OK
    );
    assert_eq!(health(&registry, "service2").await.json().as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn names_and_ids_that_are_not_names_are_a_400() {
    let registry = start_registry();
    let long = "s".repeat(257);
    let cases = [
        (
            json!({ "Name": "service\n2" }),
            "Invalid service name \"service\\n2\": it contains control characters",
        ),
        (
            json!({ "Name": "s", "ID": "s\u{7}1" }),
            "Invalid service ID \"s\\u{7}1\": it contains control characters",
        ),
        (json!({ "Name": long }), "Invalid service name: longer than 256 bytes"),
        (json!({ "Name": "s", "ID": long }), "Invalid service ID: longer than 256 bytes"),
        (
            json!({ "Name": "s", "Check": { "TTL": "10s", "CheckID": "alive\r\n" } }),
            "Invalid check ID \"alive\\r\\n\": it contains control characters",
        ),
    ];
    for (registration, expected) in cases {
        let answer = register(&registry, registration.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{registration}");
        assert_eq!(answer.body, expected, "{registration}");
    }
    let services = call("GET", &format!("{registry}/v1/catalog/services"), None).await.json();
    assert_eq!(services, json!({}), "nothing was registered");
}

#[test]
fn a_registry_on_a_public_address_refuses_to_start_without_an_acl_token() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let refused = registry::choose_acl_token(&listener, None).unwrap_err().to_string();
    assert!(refused.contains("REGISTRY_ACL_TOKEN=<TOKEN>"), "{refused}");
    assert!(refused.contains("REGISTRY_TOKEN=<TOKEN>"), "{refused}");
    let empty = registry::choose_acl_token(&listener, Some(String::new())).unwrap_err();
    assert!(empty.to_string().contains("empty"), "{empty}");
    let token = registry::choose_acl_token(&listener, Some("s3cret".to_string())).unwrap();
    assert_eq!(token.as_deref(), Some("s3cret"));

    let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(registry::choose_acl_token(&loopback, None).unwrap(), None, "the workshop's way");
}

#[actix_web::test]
async fn with_an_acl_token_every_write_needs_it_and_reads_stay_open() {
    let registry = start_registry_with_acl_token(Some("s3cret"));
    let put = |path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = awc::Client::new().put(format!("{registry}{path}"));
        if let Some(token) = token {
            request = request.insert_header(("X-Consul-Token", token));
        }
        async move {
            let mut response = match body {
                Some(body) => request.send_json(&body).await.unwrap(),
                None => request.send().await.unwrap(),
            };
            let body = response.body().await.unwrap();
            (response.status(), String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let entry = service2(1, json!({ "TTL": "10s" }));
    for token in [None, Some("wrong"), Some("s3cre"), Some("")] {
        let (status, body) = put("/v1/agent/service/register", token, Some(entry.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(body.starts_with("Permission denied"), "{body}");
    }
    assert_eq!(health(&registry, "service2").await.json(), json!([]), "reads need no token");

    let registered = put("/v1/agent/service/register", Some("s3cret"), Some(entry)).await;
    assert_eq!(registered.0, StatusCode::OK);
    let writes = [
        "/v1/agent/check/pass/service:service2-1",
        "/v1/agent/check/warn/service:service2-1",
        "/v1/agent/check/fail/service:service2-1",
        "/v1/agent/service/deregister/service2-1",
    ];
    for path in writes {
        assert_eq!(put(path, None, None).await.0, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(put(path, Some("wrong"), None).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let entries = health(&registry, "service2").await.json();
    assert_eq!(entries[0]["Checks"][0]["Status"], "critical", "no report got through");

    let passed = put("/v1/agent/check/pass/service:service2-1", Some("s3cret"), None).await;
    assert_eq!(passed.0, StatusCode::OK);
    let gone = put("/v1/agent/service/deregister/service2-1", Some("s3cret"), None).await;
    assert_eq!(gone.0, StatusCode::OK);
    assert_eq!(health(&registry, "service2").await.json(), json!([]));
}

/// How a service registers with `registry_url`, sending `registry_token`.
fn registration_options(registry_url: &str, registry_token: Option<&str>) -> RegistrationOptions {
    RegistrationOptions {
        registry_token: registry_token.map(str::to_string),
        ..registration(registry_url)
    }
}

#[actix_web::test]
async fn a_service_given_the_registry_token_registers_and_deregisters() {
    let registry = start_registry_with_acl_token(Some("s3cret"));
    let address = "127.0.0.1:3003".parse().unwrap();
    let options = registration_options(&registry, Some("s3cret"));
    let registered = Registration::new("service2", address, options).start();
    wait_for_entries(&registry, "service2", 1).await;
    registered.leave().await;
    assert_eq!(health(&registry, "service2").await.json(), json!([]));
}

#[actix_web::test]
async fn a_service_on_an_ipv6_address_registers_with_a_check_it_can_be_called_at() {
    let registry = start_registry();
    let options = registration_options(&registry, None);
    let registered = Registration::new("service2", "[::1]:3003".parse().unwrap(), options).start();
    wait_for_entries(&registry, "service2", 1).await;
    registered.leave().await;
}

#[actix_web::test]
async fn a_restarted_registry_sees_every_service_again_within_seconds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let registry = format!("http://{address}");
    let first = registry::server(listener).unwrap();
    let first_handle = first.handle();
    actix_web::rt::spawn(first);
    let options = registration_options(&registry, None);
    let _registered =
        Registration::new("service2", "127.0.0.1:3003".parse().unwrap(), options).start();
    wait_for_entries(&registry, "service2", 1).await;

    first_handle.stop(false).await;
    actix_web::rt::spawn(registry::server(TcpListener::bind(address).unwrap()).unwrap());
    // Well within the ten seconds it took before, and a long way from a
    // timing assertion: the service tries again every second.
    let restarted = Instant::now();
    loop {
        if health(&registry, "service2").await.json().as_array().unwrap().len() == 1 {
            break;
        }
        assert!(restarted.elapsed() < Duration::from_secs(5), "service2 did not register again");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_check_keeps_at_most_4096_bytes_of_output_and_the_dashboard_shows_1024() {
    let registry = start_registry();
    register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    let note = "%C3%A9".repeat(5000); // "é", percent-encoded: 2 bytes each
    let path = format!("{registry}/v1/agent/check/pass/service:service2-1?note={note}");
    assert_eq!(call("PUT", &path, None).await.status, StatusCode::OK);
    let entries = health(&registry, "service2").await.json();
    assert_eq!(entries[0]["Checks"][0]["Output"], "é".repeat(2048));

    let note = "%3C".repeat(5000); // "<", which the dashboard escapes
    let path = format!("{registry}/v1/agent/check/pass/service:service2-1?note={note}");
    assert_eq!(call("PUT", &path, None).await.status, StatusCode::OK);
    let page = call("GET", &registry, None).await.body;
    let shown = format!("<pre>{} …</pre>", "&lt;".repeat(1024));
    assert!(page.contains(&shown) && !page.contains(&"&lt;".repeat(1025)), "{page}");
}

#[actix_web::test]
async fn a_card_shows_at_most_1024_bytes_of_output_however_many_checks_it_has() {
    let registry = start_registry();
    let mut two_checks = service2(1, Value::Null);
    two_checks["Checks"] =
        json!([{ "CheckID": "a", "TTL": "10s" }, { "CheckID": "b", "TTL": "10s" }]);
    register(&registry, two_checks).await;
    for check in ["a", "b"] {
        let note = "%3C".repeat(1000);
        let path = format!("{registry}/v1/agent/check/pass/{check}?note={note}");
        assert_eq!(call("PUT", &path, None).await.status, StatusCode::OK);
    }
    let page = call("GET", &registry, None).await.body;
    let (first, second) = ("&lt;".repeat(1000), "&lt;".repeat(1024 - 1000));
    assert!(page.contains(&format!("<pre>{first}</pre>")), "{page}");
    assert!(page.contains(&format!("<pre>{second} …</pre>")), "the rest of the 1024: {page}");
}

#[actix_web::test]
async fn a_service_name_that_is_no_dns_label_is_a_400_and_changes_nothing() {
    let registry = start_registry();
    let too_long = "s".repeat(64);
    for name in
        ["users?1", "service2#", "service_2", "service.2", "-s2", "s2-", "sérvice", &too_long]
    {
        let answer = register(&registry, json!({ "Name": name, "Check": { "TTL": "10s" } })).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}");
        let expected =
            format!("Invalid service name {name:?}: it would not be discoverable via DNS.");
        assert!(answer.body.starts_with(&expected), "{}", answer.body);
        assert!(!registry::is_service_name(name), "{name}");
    }
    let services = call("GET", &format!("{registry}/v1/catalog/services"), None).await.json();
    assert_eq!(services, json!({}), "nothing was registered");

    for name in ["s", "service2", "Service-2", &"s".repeat(63)] {
        let answer = register(&registry, json!({ "Name": name, "Check": { "TTL": "10s" } })).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.body);
        assert!(registry::is_service_name(name), "{name}");
    }
}

/// `count` TTL checks, as a registration's "Checks".
fn ttl_checks(count: usize) -> Value {
    (0..count).map(|n| json!({ "CheckID": format!("check-{n}"), "TTL": "10s" })).collect()
}

#[actix_web::test]
async fn a_ninth_check_is_a_400_and_the_instance_keeps_the_checks_it_had() {
    let registry = start_registry();
    let mut entry = service2(1, json!({ "TTL": "10s", "CheckID": "alive", "Status": "passing" }));
    assert_eq!(register(&registry, entry.clone()).await.status, StatusCode::OK);
    entry["Checks"] = ttl_checks(8);
    let refused = register(&registry, entry.clone()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body, "Invalid registration: 9 checks; an instance may have at most 8");
    let entries = health(&registry, "service2?passing").await.json();
    assert_eq!(entries[0]["Checks"].as_array().unwrap().len(), 1, "{entries}");

    entry["Checks"] = ttl_checks(7);
    assert_eq!(register(&registry, entry).await.status, StatusCode::OK, "8 are allowed");
    let entries = health(&registry, "service2").await.json();
    assert_eq!(entries[0]["Checks"].as_array().unwrap().len(), 8, "{entries}");
}

#[actix_web::test]
async fn the_registry_keeps_256_instances_and_refuses_more_with_a_507() {
    let registry = start_registry();
    for port in 1..=256 {
        let answer = register(&registry, service2(port, json!({ "TTL": "10s" }))).await;
        assert_eq!(answer.status, StatusCode::OK, "{port}: {}", answer.body);
    }
    let full = register(&registry, service2(257, json!({ "TTL": "10s" }))).await;
    assert_eq!(full.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(full.body, "Registry full: it keeps at most 256 instances; deregister one first");
    assert_eq!(health(&registry, "service2").await.json().as_array().unwrap().len(), 256);

    // Registering again takes no more room, and a deregistration makes some.
    let again = register(&registry, service2(1, json!({ "TTL": "10s" }))).await;
    assert_eq!(again.status, StatusCode::OK);
    call("PUT", &format!("{registry}/v1/agent/service/deregister/service2-1"), None).await;
    let answer = register(&registry, service2(257, json!({ "TTL": "10s" }))).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_long_address_or_check_name_is_a_400() {
    let registry = start_registry();
    let mut long_address = service2(1, json!({ "TTL": "10s" }));
    long_address["Address"] = json!("a".repeat(257));
    let answer = register(&registry, long_address).await;
    assert_eq!(answer.body, "Invalid service address: longer than 256 bytes");
    let long_name = service2(1, json!({ "TTL": "10s", "Name": "c".repeat(257) }));
    let answer = register(&registry, long_name).await;
    assert_eq!(answer.body, "Invalid check name: longer than 256 bytes");
    assert_eq!(health(&registry, "service2").await.json(), json!([]), "nothing was registered");
}

#[actix_web::test]
async fn an_http_check_that_calls_anything_but_its_instance_is_a_400() {
    let registry = start_registry();
    let check = |url: &str| json!({ "HTTP": url, "Interval": "10s" });
    let elsewhere = [
        "http://127.0.0.1:3004/healthz",
        "http://127.0.0.2:3003/healthz",
        "http://localhost:3003/healthz",
        "http://127.0.0.1/metrics",
        "https://127.0.0.1:3003/healthz",
        "127.0.0.1:3003/healthz",
    ];
    for url in elsewhere {
        let answer = register(&registry, service2(3003, check(url))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{url}");
        let expected = format!(
            "Invalid check: HTTP {url:?} must call the instance itself, at its Address and Port: \
             http://127.0.0.1:3003/…"
        );
        assert_eq!(answer.body, expected);
    }
    assert_eq!(health(&registry, "service2").await.json(), json!([]), "nothing was registered");

    let own = register(&registry, service2(3003, check("http://127.0.0.1:3003/healthz"))).await;
    assert_eq!(own.status, StatusCode::OK);
    let mut no_address = service2(3013, check("http://127.0.0.1:3013/healthz"));
    no_address["Address"] = json!("");
    assert_eq!(register(&registry, no_address).await.status, StatusCode::OK, "this machine");
    let mut ipv6 = service2(3023, check("http://[::1]:3023/healthz"));
    ipv6["Address"] = json!("::1");
    assert_eq!(register(&registry, ipv6).await.status, StatusCode::OK);
}

/// A server that answers every request 200 with `body` as `content_type`.
fn page(content_type: &'static str, body: &'static str) -> String {
    start(move |listener| {
        step09_monitoring::serve(listener, move |routes| {
            routes.default_service(web::to(move || async move {
                HttpResponse::Ok().content_type(content_type).body(body)
            }));
        })
    })
}

#[actix_web::test]
async fn a_check_shows_a_health_answer_and_nothing_of_any_other_page() {
    let registry = start_registry();
    let cases = [
        ("application/health+json", r#"{"status":"pass"}"#, r#"{"status":"pass"}"#),
        ("text/plain; charset=utf-8", "OK\nand the rest", "OK"),
        ("application/json", r#"{"secret":1}"#, "(not shown: not a health answer)"),
        ("text/html", "<p>secret</p>", "(not shown: not a health answer)"),
    ];
    for (content_type, body, shown) in cases {
        let url = page(content_type, body);
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let check = json!({ "HTTP": format!("{url}/healthz"), "Interval": "100ms" });
        assert_eq!(register(&registry, service2(port, check)).await.status, StatusCode::OK);
        let id = format!("service2-{port}");
        let deadline = Instant::now() + PATIENCE;
        let output = loop {
            let entries = health(&registry, "service2").await.json();
            let entry = entries.as_array().unwrap().iter().find(|e| e["Service"]["ID"] == id);
            let output = entry.map(|e| e["Checks"][0]["Output"].clone()).unwrap_or_default();
            if output.as_str().is_some_and(|output| !output.is_empty()) {
                break output;
            }
            assert!(Instant::now() < deadline, "{id} was never checked");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(output, format!("HTTP GET {url}/healthz: 200 OK Output: {shown}"));
    }
}

#[actix_web::test]
async fn a_check_that_is_redirected_is_critical_and_goes_no_further() {
    let registry = start_registry();
    let elsewhere = page("application/health+json", r#"{"status":"pass"}"#);
    let location = format!("{elsewhere}/metrics");
    let instance = start(move |listener| {
        step09_monitoring::serve(listener, move |routes| {
            let location = location.clone();
            routes.default_service(web::to(move || {
                let location = location.clone();
                async move { HttpResponse::Found().insert_header(("Location", location)).finish() }
            }));
        })
    });
    let port: u16 = instance.rsplit(':').next().unwrap().parse().unwrap();
    let check = json!({ "HTTP": format!("{instance}/healthz"), "Interval": "100ms" });
    assert_eq!(register(&registry, service2(port, check)).await.status, StatusCode::OK);
    let deadline = Instant::now() + PATIENCE;
    let check = loop {
        let check = health(&registry, "service2").await.json()[0]["Checks"][0].clone();
        if check["Output"].as_str().is_some_and(|output| !output.is_empty()) {
            break check;
        }
        assert!(Instant::now() < deadline, "never checked: {check}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["Output"], format!("HTTP GET {instance}/healthz: 302 Found Output: "));
}

/// The registry's `/metrics` page, once `done` says it is as awaited.
async fn metrics_until(registry: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = call("GET", &format!("{registry}/metrics"), None).await.body;
        if done(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "never as awaited: {page}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_service_gone_leaves_no_series_behind() {
    let registry = start_registry();
    let entry = json!({ "Name": "short-lived", "ID": "short-lived-1", "Check": { "TTL": "10s" } });
    assert_eq!(register(&registry, entry).await.status, StatusCode::OK);
    let series = r#"registry_instances{service_name="short-lived",status="critical"}"#;
    metrics_until(&registry, |page| page.contains(&format!("{series} 1"))).await;

    call("PUT", &format!("{registry}/v1/agent/service/deregister/short-lived-1"), None).await;
    metrics_until(&registry, |page| !page.contains(r#"service_name="short-lived""#)).await;
}
