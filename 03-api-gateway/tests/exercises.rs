//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 3 1
//! cargo test -p step03-api-gateway --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 3 1` (from
//! solutions/03-api-gateway/hints.md). It checks what a client sees, not how
//! you wrote it.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use clap::Parser;
use serde_json::Value;
use step03_api_gateway::gateway;
use support::{header, nothing_listening, request, start};

mod support;

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_whoami() {
    hints_only();
    let gateway = start_gateway(&[]).unwrap();
    let mut response = request("GET", &format!("{gateway}/whoami")).send().await.unwrap();
    let status = response.status();
    let body = String::from_utf8_lossy(&response.body().await.unwrap()).to_string();
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /whoami with the key answered {status}: {body}. It should answer 200, from the \
         gateway itself: no service is called whoami."
    );
    let answer: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        answer["key_length"], 12,
        "GET /whoami answered {body}: it should answer JSON with the length of the key it was \
         called with, {{\"key_length\":12}} for the workshop key"
    );
    assert!(!body.contains(gateway::WORKSHOP_KEY), "GET /whoami showed the key itself: {body}");

    let gateway = start_gateway(&["--api-key", "s3cret"]).unwrap();
    let answer: Value = awc::Client::default()
        .get(format!("{gateway}/whoami"))
        .insert_header(("authorization", "Bearer s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        answer["key_length"], 6,
        "with --api-key s3cret, GET /whoami answered {answer}: it should say 6, the length of \
         the key the caller sent"
    );

    let response = awc::Client::default().get(format!("{gateway}/whoami")).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "GET /whoami without a key should be refused like every other route: the key check \
         (`require_api_key`) must wrap it too"
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_the_413_says_which_check_caught_the_body() {
    hints_only();
    let gateway = start_gateway(&["--max-body-bytes", "64"]).unwrap();
    let url = format!("{gateway}/service1/");

    // A length declared up front: refused before any call.
    let mut declared = request("POST", &url).send_body("x".repeat(65)).await.unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let declared: Value = declared.json().await.unwrap();
    let declared = declared["detail"].as_str().unwrap_or_default().to_string();

    // No length, chunks: counted on their way to the service.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
    );
    let mut streamed = request("POST", &url).send_stream(chunks).await.unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let streamed: Value = streamed.json().await.unwrap();
    let streamed = streamed["detail"].as_str().unwrap_or_default().to_string();

    assert_ne!(
        declared, streamed,
        "both 413s say the same, \"{declared}\": a client cannot tell whether its body was \
         refused for the Content-Length it declared or cut off while it came in chunks"
    );
    assert!(
        declared.to_lowercase().contains("content-length"),
        "the 413 for a body whose Content-Length is over the limit says \"{declared}\": it \
         should name the Content-Length the client declared"
    );
    assert!(
        streamed.to_lowercase().contains("chunked"),
        "the 413 for a body sent in chunks says \"{streamed}\": it should say that the body came \
         chunked (it had no length up front), counted as it streamed"
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_3_a_rate_limit_per_client() {
    hints_only();
    let gateway = start_gateway(&["--rate-limit", "5"]).unwrap_or_else(|error| {
        panic!(
            "the gateway has no --rate-limit option ({error}): it should take one (and \
             GATEWAY_RATE_LIMIT), with no limit when it is not set"
        )
    });
    let url = format!("{gateway}/");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..20 {
        let response = request("GET", &url).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let Some(mut limited) = limited else {
        panic!(
            "with --rate-limit 5, 20 requests in a row all passed ({statuses:?}): the sixth in \
             the same second should get 429 Too Many Requests"
        )
    };
    assert!(
        statuses.len() > 5,
        "with --rate-limit 5, request {} was refused already ({statuses:?}): the first five of \
         a second should pass",
        statuses.len()
    );
    let retry_after = header(&limited, "retry-after").and_then(|value| value.parse::<u64>().ok());
    let Some(retry_after) = retry_after.filter(|seconds| (1..=60).contains(seconds)) else {
        panic!(
            "the 429 has no Retry-After header in whole seconds ({:?}): it tells the client \
             when to try again, the time left until its limit resets, rounded up",
            header(&limited, "retry-after")
        )
    };
    assert_eq!(header(&limited, "content-type"), Some("application/problem+json"));
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["status"], 429, "the 429's problem+json: {problem}");

    // A client that waits as long as Retry-After says is let in again.
    let limited_at = Instant::now();
    let allowed = Duration::from_secs(retry_after) + Duration::from_secs(1);
    loop {
        let status = request("GET", &url).send().await.unwrap().status();
        if status != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert!(
            limited_at.elapsed() < allowed,
            "Retry-After said {retry_after}s, and requests are still refused after {:?}",
            limited_at.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }

    // Without the option, no limit.
    let gateway = start_gateway(&[]).unwrap();
    for _ in 0..20 {
        let status = request("GET", &format!("{gateway}/")).send().await.unwrap().status();
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "without --rate-limit, no limit");
    }
}

/// The gateway's options as its command line gives them (`gateway --help`),
/// so that these checks build whatever options you add.
#[derive(Parser)]
struct GatewayCommand {
    #[command(flatten)]
    options: gateway::Options,
}

/// Starts the gateway with `args` on a free port, calling a stand-in for
/// service1 that takes any body and nothing for service2; returns its URL,
/// or what the command line said about `args`.
fn start_gateway(args: &[&str]) -> Result<String, String> {
    let service1 = start_sink();
    let service2 = nothing_listening();
    let urls = ["--service1-url", service1.as_str(), "--service2-url", service2.as_str()];
    let command = ["gateway"].iter().chain(&urls).chain(args);
    let options = GatewayCommand::try_parse_from(command)
        .map_err(|error| error.to_string().lines().next().unwrap_or_default().to_string())?;
    Ok(start(|listener| gateway::server(listener, options.options)))
}

/// A stand-in for a service that reads whatever it is sent and answers 200.
fn start_sink() -> String {
    start(|listener| {
        step03_api_gateway::serve(listener, |routes| {
            routes.default_service(web::to(|_: Bytes| async { HttpResponse::Ok().finish() }));
        })
    })
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
