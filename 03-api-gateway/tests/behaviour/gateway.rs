//! What a client of the gateway sees.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use crate::support::{PATIENCE, header, nothing_listening, request, start, start_service1};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use step03_api_gateway::gateway::{self, WORKSHOP_KEY};
use step03_api_gateway::service2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn options(service1_url: &str, service2_url: &str) -> gateway::Options {
    gateway::Options {
        port: 0,
        service1_url: service1_url.to_string(),
        service2_url: service2_url.to_string(),
        api_key: None,
        upstream_timeout: Duration::from_millis(300),
        max_body_bytes: 64,
    }
}

fn start_gateway(options: gateway::Options) -> String {
    start(|listener| gateway::server(listener, options))
}

/// The whole step: service2, service1 calling it, and the gateway.
fn start_step() -> String {
    let service2_url = start(service2::server);
    let service1_url = start_service1(&service2_url, Duration::from_secs(2));
    start_gateway(options(&service1_url, &service2_url))
}

/// A stand-in for a service that answers with what it received.
fn start_echo() -> String {
    start(|listener| {
        step03_api_gateway::serve(listener, |routes| {
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
    let gateway = start_step();
    for path in ["/", "/service1/", "/service2/anything"] {
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
    let gateway = start_step();
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
    let gateway = start_step();
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
    let mut options = options(&nothing_listening(), &nothing_listening());
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
    let Err(error) = gateway::server(listener, options("http://a", "http://b")) else {
        panic!("the gateway started on 0.0.0.0 with the public workshop key");
    };
    assert!(error.to_string().contains("no API key of its own"), "{error}");
    assert!(error.to_string().contains("GATEWAY_API_KEY"), "{error}");
}

#[actix_web::test]
async fn the_gateway_starts_on_a_public_address_with_a_key() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let mut options = options("http://a", "http://b");
    options.api_key = Some("s3cret".to_string());
    assert!(gateway::server(listener, options).is_ok());
}

#[actix_web::test]
async fn root_aggregates_both_services_as_json() {
    let gateway = start_step();
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
    let gateway = start_step();
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
    let gateway = start_gateway(options(&start(service2::server), &service2_url));
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
    let gateway = start_gateway(options(&echo, &nothing_listening()));
    let mut response =
        request("PUT", &format!("{gateway}/service1/orders/7?express=yes&note=a%20b"))
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
    let gateway = start_gateway(options(&echo, &nothing_listening()));
    let seen: Value =
        request("GET", &format!("{gateway}/service1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["path"], "/");
}

#[actix_web::test]
async fn the_service_sees_the_path_the_gateway_decided_on() {
    let echo = start_echo();
    let gateway = start_gateway(options(&echo, &nothing_listening()));
    let seen = |path: &'static str| {
        let url = format!("{gateway}/{path}");
        async move { request("GET", &url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Decoded once at the gateway, and sent on spelt one way.
    assert_eq!(seen("%73ervice1/%6Frders/a%20b%2Bc").await["path"], "/orders/a%20b%2Bc");

    // What a service could read otherwise than the gateway is refused.
    for path in ["service1/a%2Fb", "service1/%2e%2e/healthz", "service1/a//b", "service1/%00"] {
        let mut response = request("GET", &format!("{gateway}/{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("is refused: it has"), "{problem}");
    }
}

#[actix_web::test]
async fn a_client_that_sends_its_body_too_slowly_gets_408_not_504() {
    let gateway = start_gateway(options(&start_echo(), &nothing_listening()));
    let mut client =
        tokio::net::TcpStream::connect(gateway.trim_start_matches("http://")).await.unwrap();
    // A body announced, and only its first byte sent.
    let head = "POST /service1/ HTTP/1.1\r\nHost: gateway\r\n\
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
    let mut options = options(&silent_url, &nothing_listening());
    options.max_body_bytes = 64 * 1024 * 1024;
    let gateway = start_gateway(options);
    let mut client =
        tokio::net::TcpStream::connect(gateway.trim_start_matches("http://")).await.unwrap();
    let exchange = async {
        let head = "POST /service1/ HTTP/1.1\r\nHost: gateway\r\n\
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
    let gateway = start_gateway(options(&nothing_listening(), &echo));
    // Written by hand: HTTP clients manage Connection themselves.
    let request = format!(
        "GET /service2/ HTTP/1.1\r\n\
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
    let gateway = start_gateway(options(&echo, &nothing_listening()));
    let mut forged = request("GET", &format!("{gateway}/service1/"));
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
    let gateway = start_gateway(options(&echo, &nothing_listening()));
    let at_limit = "x".repeat(64);
    let response =
        request("POST", &format!("{gateway}/service1/")).send_body(at_limit).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let over_limit = "x".repeat(65);
    let mut response =
        request("POST", &format!("{gateway}/service1/")).send_body(over_limit).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "the body is larger than the gateway's limit of 64 bytes");

    // Without a Content-Length (chunked), the gateway counts as it streams.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let response =
        request("POST", &format!("{gateway}/service1/")).send_stream(chunks).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[actix_web::test]
async fn headers_over_the_limit_are_a_431_and_never_reach_the_service() {
    let gateway = start_gateway(options(&start_echo(), &nothing_listening()));
    let url = format!("{gateway}/service1/");
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
    let gateway = start_step();
    for path in ["/servce1/x", "/service3", "/favicon.ico"] {
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
    let gateway = start_gateway(options(&down, &silent_url));

    let mut response = request("GET", &format!("{gateway}/service1/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        format!("service1 at {down} refused the connection: is it running?")
    );

    let mut response = request("GET", &format!("{gateway}/service2/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], format!("service2 at {silent_url} did not answer within 300ms"));
}

#[actix_web::test]
async fn root_serves_get_only() {
    let gateway = start_step();
    let response = request("DELETE", &format!("{gateway}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("GET"));
}
