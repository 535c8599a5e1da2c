//! What a client of the gateway sees.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{
    PATIENCE, gateway_options, header, nothing_listening, register_passing, request, start,
    start_gateway, start_service1,
};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use step06_health_check_api::gateway::{self, WORKSHOP_KEY};
use step06_health_check_api::{registry, service2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A registry where each `(service, url)` is a passing instance, and a
/// gateway finding them there; returns the gateway's URL.
async fn start_gateway_with(instances: &[(&str, &str)]) -> String {
    let registry_url = start(registry::server);
    for (service, url) in instances {
        register_passing(&registry_url, service, url).await;
    }
    start_gateway(gateway_options(&registry_url))
}

/// The whole step: a registry, service2, service1 finding it, and the
/// gateway finding both.
async fn start_step() -> String {
    let registry_url = start(registry::server);
    let service2_url = start(service2::server);
    register_passing(&registry_url, "service2", &service2_url).await;
    let service1_url = start_service1(&registry_url, Duration::from_secs(2));
    register_passing(&registry_url, "service1", &service1_url).await;
    start_gateway(gateway_options(&registry_url))
}

/// A stand-in for a service that answers with what it received.
fn start_echo() -> String {
    start(|listener| {
        step06_health_check_api::serve(listener, |routes| {
            routes.default_service(web::to(echo));
        })
    })
}

async fn echo(request: HttpRequest, body: Bytes) -> HttpResponse {
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect();
    HttpResponse::Created().insert_header(("x-answered-by", "echo")).json(json!({
        "method": request.method().as_str(),
        "path": request.path(),
        "query": request.query_string(),
        "body": String::from_utf8_lossy(&body),
        "headers": headers,
    }))
}

async fn text<S>(response: &mut awc::ClientResponse<S>) -> String
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
}

#[actix_web::test]
async fn no_key_is_a_401_with_a_bearer_challenge() {
    let gateway = start_step().await;
    for path in ["/", "/api/service1/", "/api/service2/anything", "/api/nosuchservice"] {
        let mut response =
            awc::Client::default().get(format!("{gateway}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(header(&response, "www-authenticate"), Some(r#"Bearer realm="gateway""#));
        assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 401);
        assert_eq!(problem["detail"], r#"send your API key as "Authorization: Bearer <key>""#);
    }
}

#[actix_web::test]
async fn a_wrong_key_is_a_401_invalid_token() {
    let gateway = start_step().await;
    for wrong in
        ["Bearer workshop-kez", "Bearer workshop-key-and-more", "Bearer ", "Basic d29ya3Nob3Ata2V5"]
    {
        let response = awc::Client::default()
            .get(format!("{gateway}/"))
            .insert_header(("authorization", wrong))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let response = awc::Client::default()
        .get(format!("{gateway}/"))
        .insert_header(("authorization", "Bearer workshop-kez"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "www-authenticate"), Some(r#"Bearer error="invalid_token""#));
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let gateway = start_step().await;
    let response = awc::Client::default()
        .get(format!("{gateway}/"))
        .insert_header(("authorization", format!("bearer {WORKSHOP_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_key_of_its_own_replaces_the_workshop_key() {
    let mut options = gateway_options(&start(registry::server));
    options.api_key = Some("s3cret".to_string());
    let gateway = start_gateway(options);
    let with_workshop_key = request("GET", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(with_workshop_key.status(), StatusCode::UNAUTHORIZED);
    let with_own_key = awc::Client::default()
        .get(format!("{gateway}/"))
        .insert_header(("authorization", "Bearer s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_own_key.status(), StatusCode::OK);
}

#[test]
fn the_gateway_refuses_to_start_on_a_public_address_without_a_key() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let Err(error) = gateway::server(listener, gateway_options("http://a")) else {
        panic!("the gateway started on 0.0.0.0 with the public workshop key");
    };
    assert!(error.to_string().contains("no API key of its own"), "{error}");
    assert!(error.to_string().contains("GATEWAY_API_KEY"), "{error}");
}

#[actix_web::test]
async fn the_gateway_starts_on_a_public_address_with_a_key() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let mut options = gateway_options("http://a");
    options.api_key = Some("s3cret".to_string());
    assert!(gateway::server(listener, options).is_ok());
}

#[actix_web::test]
async fn root_aggregates_both_services_as_json() {
    let gateway = start_step().await;
    let mut response = request("GET", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(header(&response, "vary"), Some("Accept"));
    // service1 passes on what service2 says (step 02).
    assert_eq!(
        text(&mut response).await,
        r#"{"services":[{"service":"service1","answer":{"name":"service 2"}},{"service":"service2","answer":{"name":"service 2"}}]}"#
    );
}

#[actix_web::test]
async fn root_answers_xml_to_a_client_that_prefers_it() {
    let gateway = start_step().await;
    let expected = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><services>"#,
        r#"<service name="service1"><name>service 2</name></service>"#,
        r#"<service name="service2"><name>service 2</name></service>"#,
        "</services>"
    );
    for accept in ["application/xml", "text/xml", "application/json;q=0.5, application/xml"] {
        let mut response = request("GET", &format!("{gateway}/"))
            .insert_header(("accept", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "content-type"), Some("application/xml"), "{accept}");
        assert_eq!(text(&mut response).await, expected, "{accept}");
    }
    for accept in
        ["application/json", "*/*", "application/xml;q=0.5, application/json", "text/html"]
    {
        let response = request("GET", &format!("{gateway}/"))
            .insert_header(("accept", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "content-type"), Some("application/json"), "{accept}");
    }
}

#[actix_web::test]
async fn root_still_answers_when_a_service_is_down_and_marks_it() {
    let service2_url = nothing_listening();
    let gateway =
        start_gateway_with(&[("service1", &start(service2::server)), ("service2", &service2_url)])
            .await;
    let mut response = request("GET", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["services"][0],
        json!({ "service": "service1", "answer": { "name": "service 2" } })
    );
    assert_eq!(body["services"][1]["service"], "service2");
    assert_eq!(body["services"][1]["error"]["status"], 502);
    assert_eq!(
        body["services"][1]["error"]["detail"],
        format!("service2 at {service2_url} refused the connection: is it running?")
    );

    let mut response = request("GET", &format!("{gateway}/"))
        .insert_header(("accept", "application/xml"))
        .send()
        .await
        .unwrap();
    let xml = text(&mut response).await;
    assert!(xml.contains(r#"<service name="service2"><error status="502">service2 at "#), "{xml}");
}

#[actix_web::test]
async fn proxied_requests_carry_method_path_query_headers_and_body() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    let mut response =
        request("PUT", &format!("{gateway}/api/service1/orders/7?express=yes&note=a%20b"))
            .insert_header(("content-type", "text/plain"))
            .insert_header(("x-request-note", "kept"))
            .send_body("one parcel")
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "the service's status comes back");
    assert_eq!(header(&response, "x-answered-by"), Some("echo"), "the service's headers come back");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/orders/7");
    assert_eq!(seen["query"], "express=yes&note=a%20b");
    assert_eq!(seen["body"], "one parcel");
    assert_eq!(seen["headers"]["content-type"], "text/plain");
    assert_eq!(seen["headers"]["x-request-note"], "kept");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], gateway.trim_start_matches("http://"));
    assert!(seen["headers"].get("authorization").is_none(), "the API key stays at the edge");
}

#[actix_web::test]
async fn the_bare_service_path_reaches_the_service_root() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    let seen: Value = request("GET", &format!("{gateway}/api/service1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/");
}

#[actix_web::test]
async fn the_service_sees_the_path_the_gateway_decided_on() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    let seen = |path: &'static str| {
        let url = format!("{gateway}/api/{path}");
        async move { request("GET", &url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Decoded once at the gateway, and sent on spelt one way.
    assert_eq!(seen("%73ervice1/%6Frders/a%20b%2Bc").await["path"], "/orders/a%20b%2Bc");

    // What a service could read otherwise than the gateway is refused.
    for path in ["service1/a%2Fb", "service1/%2e%2e/healthz", "service1/a//b", "service1/%00"] {
        let mut response = request("GET", &format!("{gateway}/api/{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("is refused: it has"), "{problem}");
    }
}

#[actix_web::test]
async fn a_services_own_endpoints_are_not_passed_on_however_spelt() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    for (method, path) in
        [("GET", "healthz"), ("PUT", "healthz/override"), ("PUT", "%68ealthz/override")]
    {
        let url = format!("{gateway}/api/service1/{path}");
        let mut response = request(method, &url).send_body("fail").await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let problem: Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("the gateway does not pass on"), "{detail}");
    }
}

#[actix_web::test]
async fn a_service_listed_lately_is_a_503_not_a_404_while_the_registry_forgets_it() {
    let registry_url = start(registry::server);
    let echo = start_echo();
    register_passing(&registry_url, "service1", &echo).await;
    let gateway = start_gateway(gateway_options(&registry_url));
    assert_eq!(
        request("GET", &format!("{gateway}/api/service1/")).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    // As after a restart of the registry: it lists no service1 for a moment.
    let id = format!("service1-{}", echo.trim_start_matches("http://"));
    let forgotten = format!("{registry_url}/v1/agent/service/deregister/{id}");
    awc::Client::default().put(forgotten).send().await.unwrap();

    let deadline = std::time::Instant::now() + PATIENCE;
    let response = loop {
        let response = request("GET", &format!("{gateway}/api/service1/")).send().await.unwrap();
        if response.status() != StatusCode::CREATED {
            break response; // once the gateway's second of memory is over
        }
        assert!(std::time::Instant::now() < deadline, "the gateway never noticed");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&response, "retry-after").is_some());
}

#[actix_web::test]
async fn a_client_that_sends_its_body_too_slowly_gets_408_not_504() {
    let gateway = start_gateway_with(&[("service1", &start_echo())]).await;
    let mut client =
        tokio::net::TcpStream::connect(gateway.trim_start_matches("http://")).await.unwrap();
    // A body announced, and only its first byte sent.
    let head = "POST /api/service1/ HTTP/1.1\r\nHost: gateway\r\n\
                Authorization: Bearer workshop-key\r\nContent-Length: 10\r\n\r\n{";
    client.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = client.read_to_string(&mut answer);
    actix_web::rt::time::timeout(PATIENCE, read).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout"), "{answer}");
}

#[actix_web::test]
async fn a_client_still_sending_its_body_gets_the_answer_and_is_not_left_waiting() {
    // A service that accepts connections and never reads: the call times
    // out while the client is still sending a long chunked body.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let registry_url = start(registry::server);
    register_passing(&registry_url, "service1", &silent_url).await;
    let mut options = gateway_options(&registry_url);
    options.max_body_bytes = 64 * 1024 * 1024;
    let gateway = start_gateway(options);
    let mut client =
        tokio::net::TcpStream::connect(gateway.trim_start_matches("http://")).await.unwrap();
    let exchange = async {
        let head = "POST /api/service1/ HTTP/1.1\r\nHost: gateway\r\n\
                    Authorization: Bearer workshop-key\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
        for _ in 0..320 {
            client.write_all(chunk.as_bytes()).await.unwrap(); // 20 MiB in all
        }
        client.write_all(b"0\r\n\r\n").await.unwrap();
        let mut answer = vec![0; 64];
        client.read_exact(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).to_string()
    };
    let answer = actix_web::rt::time::timeout(PATIENCE, exchange)
        .await
        .expect("the client was left waiting");
    assert!(answer.starts_with("HTTP/1.1 504 Gateway Timeout"), "{answer}");
    drop(silent);
}

#[actix_web::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service2", &echo)]).await;
    // Written by hand: HTTP clients manage Connection themselves.
    let request = format!(
        "GET /api/service2/ HTTP/1.1\r\n\
         Host: gateway.example\r\n\
         Authorization: Bearer {WORKSHOP_KEY}\r\n\
         Connection: close, x-hop-only\r\n\
         X-Hop-Only: 1\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         TE: trailers\r\n\
         \r\n"
    );
    let mut connection =
        tokio::net::TcpStream::connect(gateway.trim_start_matches("http://")).await.unwrap();
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let seen: Value = serde_json::from_str(body).unwrap();
    for hop_by_hop in ["x-hop-only", "keep-alive", "proxy-authorization", "te"] {
        assert!(seen["headers"].get(hop_by_hop).is_none(), "{hop_by_hop} was forwarded: {seen}");
    }
    assert_eq!(seen["headers"]["x-forwarded-host"], "gateway.example");
}

#[actix_web::test]
async fn a_clients_own_forwarding_headers_never_reach_the_service() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    let mut forged = request("GET", &format!("{gateway}/api/service1/"));
    for (name, value) in [
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "bank.example"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        forged = forged.insert_header((name, value));
    }
    let seen: Value = forged.send().await.unwrap().json().await.unwrap();
    // What the gateway saw itself, and nothing the client wrote.
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], gateway.trim_start_matches("http://"));
    for dropped in ["forwarded", "x-forwarded-port", "x-real-ip"] {
        assert!(seen["headers"].get(dropped).is_none(), "{dropped} was passed on: {seen}");
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413_and_never_reaches_the_service() {
    let echo = start_echo();
    let gateway = start_gateway_with(&[("service1", &echo)]).await;
    let at_limit = "x".repeat(64);
    let response =
        request("POST", &format!("{gateway}/api/service1/")).send_body(at_limit).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let over_limit = "x".repeat(65);
    let mut response =
        request("POST", &format!("{gateway}/api/service1/")).send_body(over_limit).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "the body is larger than the gateway's limit of 64 bytes");

    // Without a Content-Length (chunked), the gateway counts as it streams.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let response =
        request("POST", &format!("{gateway}/api/service1/")).send_stream(chunks).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[actix_web::test]
async fn headers_over_the_limit_are_a_431_and_never_reach_the_service() {
    let gateway = start_gateway_with(&[("service1", &start_echo())]).await;
    let url = format!("{gateway}/api/service1/");
    let under = request("GET", &url).insert_header(("x-note", "x".repeat(15_000)));
    assert_eq!(under.send().await.unwrap().status(), StatusCode::CREATED);
    let over = request("GET", &url).insert_header(("x-note", "x".repeat(100_000)));
    let mut response = over.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().starts_with("the headers are larger"), "{problem}");
}

#[actix_web::test]
async fn an_unknown_route_is_a_404() {
    let gateway = start_step().await;
    for path in ["/service1/x", "/api", "/favicon.ico"] {
        let mut response = request("GET", &format!("{gateway}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
        let problem: Value = response.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().starts_with(&format!("no route for {path}")));
    }
}

#[actix_web::test]
async fn a_service_down_is_a_502_and_a_slow_one_a_504() {
    let down = nothing_listening();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let gateway = start_gateway_with(&[("service1", &down), ("service2", &silent_url)]).await;

    let mut response = request("GET", &format!("{gateway}/api/service1/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        format!("service1 at {down} refused the connection: is it running?")
    );

    let mut response = request("GET", &format!("{gateway}/api/service2/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], format!("service2 at {silent_url} did not answer within 300ms"));
}

#[actix_web::test]
async fn root_serves_get_only() {
    let gateway = start_step().await;
    let response = request("DELETE", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("GET"));
}

#[actix_web::test]
async fn an_unknown_service_is_a_404_and_one_with_no_passing_instance_a_503() {
    let registry_url = start(registry::server);
    let critical = json!({
        "Name": "service3", "ID": "service3-1", "Address": "127.0.0.1", "Port": 1,
        "Check": { "TTL": "1m" },
    });
    awc::Client::default()
        .put(format!("{registry_url}/v1/agent/service/register"))
        .send_json(&critical)
        .await
        .unwrap();
    let gateway = start_gateway(gateway_options(&registry_url));

    let mut response = request("GET", &format!("{gateway}/api/servce3/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "no service named servce3 is registered; registered: service3");

    let mut response = request("GET", &format!("{gateway}/api/service3/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("5"));
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("no healthy instance of service3 is registered at")
    );
}

#[actix_web::test]
async fn a_service_whose_check_just_passed_is_called_at_once() {
    // The gateway's memory of the registry's answers must not hide an
    // instance that has just come up: what waited for it must reach it.
    let registry_url = start(registry::server);
    let service2 = start(service2::server);
    let address: std::net::SocketAddr = service2.trim_start_matches("http://").parse().unwrap();
    let critical = json!({
        "Name": "service2", "ID": "service2-up", "Address": "127.0.0.1",
        "Port": address.port(), "Check": { "CheckID": "up", "TTL": "1m" },
    });
    let client = awc::Client::default();
    let register = format!("{registry_url}/v1/agent/service/register");
    assert!(client.put(register).send_json(&critical).await.unwrap().status().is_success());
    let gateway = start_gateway(gateway_options(&registry_url));
    let url = format!("{gateway}/api/service2/");
    let response = request("GET", &url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let pass = format!("{registry_url}/v1/agent/check/pass/up");
    assert!(client.put(pass).send().await.unwrap().status().is_success());
    let response = request("GET", &url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the instance that just passed");
}

#[actix_web::test]
async fn calls_to_a_service_go_to_its_instances_in_turn() {
    let (a, b) = (start_echo(), start_echo());
    let gateway = start_gateway_with(&[("service2", &a), ("service2", &b)]).await;
    let mut hosts = Vec::new();
    for _ in 0..4 {
        let seen: Value = request("GET", &format!("{gateway}/api/service2/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hosts.push(seen["headers"]["host"].as_str().unwrap().to_string());
    }
    assert!(hosts.windows(2).all(|pair| pair[0] != pair[1]), "{hosts:?}");
}

#[actix_web::test]
async fn root_aggregates_every_registered_service_but_the_gateway() {
    let service2 = start(service2::server);
    let gateway = start_gateway_with(&[
        ("service2", &service2),
        ("service9", &service2),
        ("gateway", &service2),
    ])
    .await;
    let body: Value =
        request("GET", &format!("{gateway}/")).send().await.unwrap().json().await.unwrap();
    let services: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["service2", "service9"]);
}

/// A stand-in that answers `{}` to every request and counts them: as a
/// registry, it knows no service; as a service, it is called.
fn start_counting_stub() -> (String, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let url = start(move |listener| {
        step06_health_check_api::serve(listener, move |routes| {
            let asked = counted.clone();
            routes.default_service(web::to(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                async { HttpResponse::Ok().json(json!({})) }
            }));
        })
    });
    (url, asked)
}

#[actix_web::test]
async fn a_name_that_is_no_service_name_is_refused_before_the_registry_is_asked() {
    let (registry_url, asked) = start_counting_stub();
    let gateway = start_gateway(gateway_options(&registry_url));
    // Decoded, these would be "users?1", "service2#", "users?passing": put
    // in the registry's URL as they are, they would ask it something else.
    let too_long = "a".repeat(64);
    for name in ["users%3F1", "service2%23", "users%3Fpassing", "-users", "us%20ers", &too_long] {
        let mut response =
            request("GET", &format!("{gateway}/api/{name}/ann")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
        assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
        let problem: Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("a service name is 1 to 63 letters, digits and dashes"),
            "{detail}"
        );
    }
    // Malformed paths: an encoded /, doubled slashes.
    for path in ["users%2F1/ann", "/users/ann", "users//ann"] {
        let response = request("GET", &format!("{gateway}/api/{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the registry was asked");

    // A service name is looked up, and this registry knows none.
    let name = "a".repeat(63);
    let response = request("GET", &format!("{gateway}/api/{name}/ann")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(asked.load(Ordering::SeqCst) > 0, "the registry was not asked");
}

#[actix_web::test]
async fn root_asks_no_more_than_32_services_and_says_what_it_left_out() {
    let (stub, calls) = start_counting_stub();
    let names: Vec<String> = (0..40).map(|n| format!("service{n:02}")).collect();
    let instances: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), &*stub)).collect();
    let gateway = start_gateway_with(&instances).await;
    let body: Value =
        request("GET", &format!("{gateway}/")).send().await.unwrap().json().await.unwrap();
    let parts = body["services"].as_array().unwrap();
    assert_eq!(
        (parts.len(), &parts[0]["service"], &parts[31]["service"]),
        (32, &json!("service00"), &json!("service31"))
    );
    let left_out = "40 services are registered; / asks the first 32 by name";
    assert_eq!(body["left_out"], left_out);
    assert_eq!(calls.load(Ordering::SeqCst), 32, "one call for each service asked");

    let mut response = request("GET", &format!("{gateway}/"))
        .insert_header(("accept", "application/xml"))
        .send()
        .await
        .unwrap();
    let xml = text(&mut response).await;
    assert!(xml.ends_with(&format!("<left-out>{left_out}</left-out></services>")), "{xml}");
}

#[actix_web::test]
async fn a_name_asked_for_again_and_again_is_looked_up_once_a_second() {
    let (registry_url, asked) = start_counting_stub();
    let gateway = start_gateway(gateway_options(&registry_url));
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let response = request("GET", &format!("{gateway}/api/nosuch/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // The name is looked up at most once a second, and so is the list of
    // the services registered that each 404 names.
    let seconds = started.elapsed().as_secs() + 1;
    let asked = asked.load(Ordering::SeqCst) as u64;
    assert!(asked <= 2 * seconds, "{asked} calls to the registry in {seconds} s");
}

#[actix_web::test]
async fn each_unknown_name_costs_the_registry_one_lookup() {
    let (registry_url, asked) = start_counting_stub();
    let gateway = start_gateway(gateway_options(&registry_url));
    let started = std::time::Instant::now();
    for n in 0..50 {
        let url = format!("{gateway}/api/nosuch{n}/");
        let response = request("GET", &url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // One lookup a name tells both whether it is a service and whether one
    // is healthy; the list of the services registered, which each 404
    // names, is asked for at most once a second.
    let seconds = started.elapsed().as_secs() + 1;
    let asked = asked.load(Ordering::SeqCst) as u64;
    assert!(asked <= 50 + seconds, "{asked} calls to the registry in {seconds} s");
}
