//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 2 1
//! cargo test -p step02-connect --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 2 1` (from
//! solutions/02-connect/hints.md). It checks what a client sees, not how you
//! wrote it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use step02_connect::service2;
use support::{start, start_service1};

mod support;

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_service1_wraps_service2s_answer() {
    hints_only();
    let service1 = start_service1(&start(service2::server), Duration::from_secs(2));
    let (status, answer) = get(&service1).await;
    assert_eq!(status, StatusCode::OK, "service1 answered {status}: {answer}");
    assert_eq!(
        answer,
        json!({ "name": "service 1", "service2": { "name": "service 2" } }),
        "service1 answered {answer}, service2's answer as it is: it should answer in its own \
         name, {{\"name\": \"service 1\"}}, with service2's answer under \"service2\""
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_one_retry_within_the_deadline() {
    hints_only();
    // A service2 that fails its first call only, as one restarting does.
    let service2 = Flaky::start(1, Duration::ZERO);
    let (status, answer) = get(&start_service1(&service2.url, Duration::from_secs(2))).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({ "name": "service 2" })),
        "service2 answered its first call 503 and would have answered a second one, but \
         service1 gave up after the first: its client got {status}: {answer}"
    );
    assert_eq!(service2.calls(), 2, "service2 should have been called twice");

    // A service2 that fails every call: one retry, not a loop.
    let service2 = Flaky::start(usize::MAX, Duration::ZERO);
    let (status, answer) = get(&start_service1(&service2.url, Duration::from_secs(2))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "service1 answered {status}: {answer}");
    assert_eq!(
        service2.calls(),
        2,
        "a service2 that answers 503 to everything was called {} times for one request: \
         service1 should try once more, and then give up with the last problem. A service that \
         is down needs less load, not more.",
        service2.calls()
    );

    // An answer that a second call would only repeat: no retry.
    let service2 = Flaky::answering(StatusCode::NOT_FOUND, usize::MAX, Duration::ZERO);
    let (status, answer) = get(&start_service1(&service2.url, Duration::from_secs(2))).await;
    assert_eq!(
        service2.calls(),
        1,
        "service2 answered 404 and was called {} times for one request ({status}: {answer}): \
         a 404, or a 500, would only come again. Retry only what may pass the second time.",
        service2.calls()
    );

    // A slow service2 that fails: the retry gets what is left of the
    // deadline, not a deadline of its own.
    let timeout = Duration::from_secs(2);
    let service2 = Flaky::start(usize::MAX, Duration::from_millis(1500));
    let started = Instant::now();
    let (status, answer) = get(&start_service1(&service2.url, timeout)).await;
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_millis(500),
        "with a timeout of 2s, service1 answered after {took:?} ({status}: {answer}): its \
         client waited longer because of the retry. The caller of service1 should wait no \
         longer with a retry than without."
    );
}

/// A stand-in for service2 that answers 503 (or `status`) to its first
/// `failures` calls and its name after that, each after `delay`, and counts
/// the calls.
struct Flaky {
    url: String,
    calls: Arc<AtomicUsize>,
}

impl Flaky {
    fn start(failures: usize, delay: Duration) -> Flaky {
        Flaky::answering(StatusCode::SERVICE_UNAVAILABLE, failures, delay)
    }

    fn answering(status: StatusCode, failures: usize, delay: Duration) -> Flaky {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let url = start(move |listener| {
            step02_connect::serve(listener, move |routes| {
                let calls = counted.clone();
                routes.default_service(web::to(move || {
                    let call = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        actix_web::rt::time::sleep(delay).await;
                        if call < failures {
                            HttpResponse::build(status)
                                .content_type("application/problem+json")
                                .body(format!(
                                    r#"{{"status":{},"detail":"failing"}}"#,
                                    status.as_u16()
                                ))
                        } else {
                            HttpResponse::Ok().json(json!({ "name": "service 2" }))
                        }
                    }
                }));
            })
        });
        Flaky { url, calls }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// GETs `url`; returns the status and the JSON body.
async fn get(url: &str) -> (StatusCode, Value) {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
