//! What a client of step 03's services sees.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::{header, nothing_listening, start, start_service1};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use step03_api_gateway::service2;

/// How long service1 gives service2 to answer here: not long.
const SERVICE2_TIMEOUT: Duration = Duration::from_millis(300);

/// How a stand-in for service2 answers every request.
type FakeAnswer = fn() -> HttpResponse;

/// Starts a stand-in for service2 that answers every request with `answer`.
fn start_fake_service2(answer: FakeAnswer) -> String {
    start(move |listener| {
        step03_api_gateway::serve(listener, move |routes| {
            routes.default_service(web::to(move || async move { answer() }));
        })
    })
}

/// GETs `url`; returns the status, the content type and the JSON body.
async fn get(url: &str) -> (StatusCode, String, Value) {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    let content_type = header(&response, "content-type").unwrap_or_default().to_string();
    let body = response.json().await.unwrap();
    (response.status(), content_type, body)
}

#[actix_web::test]
async fn service2_answers_its_name_on_any_path() {
    let service2_url = start(service2::server);
    let (status, _, body) = get(&format!("{service2_url}/a/b?c=d")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "name": "service 2" }));
}

#[actix_web::test]
async fn service1_answers_what_service2_answers() {
    let service1_url = start_service1(&start(service2::server), SERVICE2_TIMEOUT);
    for path in ["/", "/any/path"] {
        let (status, content_type, body) = get(&format!("{service1_url}{path}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body, json!({ "name": "service 2" }));
    }
}

#[actix_web::test]
async fn service2_down_is_a_502_naming_service2_and_its_url() {
    let service2_url = nothing_listening();
    let (status, content_type, problem) =
        get(&start_service1(&service2_url, SERVICE2_TIMEOUT)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        problem,
        json!({
            "type": "about:blank",
            "title": "Bad Gateway",
            "status": 502,
            "detail": format!("service2 at {service2_url} refused the connection: is it running?"),
        })
    );
}

#[actix_web::test]
async fn service2_slower_than_the_timeout_is_a_504() {
    // A listener that never accepts: the connection is made (the OS queues
    // it), the request is sent, and no answer ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let service2_url = format!("http://{}", silent.local_addr().unwrap());
    let (status, content_type, problem) =
        get(&start_service1(&service2_url, SERVICE2_TIMEOUT)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        problem["detail"],
        format!("service2 at {service2_url} did not answer within 300ms")
    );
}

#[actix_web::test]
async fn service2_answering_garbage_is_a_502() {
    let cases: [(FakeAnswer, &str); 3] = [
        (
            || HttpResponse::Ok().content_type("text/html").body("<h1>hello</h1>"),
            "answered something that is not JSON",
        ),
        (
            || HttpResponse::Ok().content_type("application/json").body("{\"name\":"),
            "answered something that is not JSON",
        ),
        (|| HttpResponse::InternalServerError().finish(), "answered 500 Internal Server Error"),
    ];
    for (answer, expected) in cases {
        let service2_url = start_fake_service2(answer);
        let (status, _, problem) = get(&start_service1(&service2_url, SERVICE2_TIMEOUT)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("service2 at {service2_url} {expected}")), "{detail}");
    }
}

#[actix_web::test]
async fn other_methods_get_405_problem_details_with_allow() {
    let url = start(service2::server);
    let mut response =
        awc::Client::default().post(format!("{url}/orders")).send_body("{}").await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("GET"));
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "POST is not served here; only GET is");
}

#[test]
fn a_mistyped_service2_url_is_refused_at_start() {
    for (url, expected) in [
        ("htp//127.0.0.1:3003", "not an http:// URL"),
        ("https://127.0.0.1:3003", "https is not supported"),
        ("127.0.0.1:3003", "not an http:// URL"),
        ("http://127.0.0.1:99999", "the port is not a number from 1 to 65535"),
    ] {
        let error = step03_api_gateway::http_url(url).unwrap_err();
        assert!(error.contains(expected), "{url}: {error}");
    }
    assert_eq!(
        step03_api_gateway::http_url("http://127.0.0.1:3003/").unwrap(),
        "http://127.0.0.1:3003"
    );
}

#[actix_web::test]
async fn service2s_own_problem_is_passed_on_in_the_detail() {
    let service2_url = start_fake_service2(|| {
        HttpResponse::ServiceUnavailable()
            .content_type("application/problem+json")
            .body(r#"{"status":503,"detail":"out of coffee"}"#)
    });
    let (status, _, problem) = get(&start_service1(&service2_url, SERVICE2_TIMEOUT)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        problem["detail"],
        format!("service2 at {service2_url} answered 503 Service Unavailable: out of coffee")
    );
}
