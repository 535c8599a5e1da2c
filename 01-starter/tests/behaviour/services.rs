//! What a client of step 01's services sees.

use crate::support::{header, start};
use actix_web::http::StatusCode;
use serde_json::{Value, json};
use step01_starter::{service1, service2};

#[actix_web::test]
async fn each_service_answers_its_name_on_any_path() {
    let client = awc::Client::default();
    for (server, name) in
        [(service1::server as fn(_) -> _, "service 1"), (service2::server, "service 2")]
    {
        let url = start(server);
        for path in ["/", "/users/42", "/a/b/c?x=1"] {
            let mut response = client.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            assert_eq!(header(&response, "content-type"), Some("application/json"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, json!({ "name": name }), "GET {path}");
        }
    }
}

#[actix_web::test]
async fn other_methods_get_405_problem_details_with_allow() {
    let url = start(service1::server);
    let mut response =
        awc::Client::default().post(format!("{url}/orders")).send_body("{}").await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("GET"));
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem,
        json!({
            "type": "about:blank",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": "POST is not served here; only GET is",
        })
    );
}
