//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 8 1
//! cargo test -p step08-tracing --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 8 1` (from
//! solutions/08-tracing/hints.md). It runs the step's real binary and plays
//! Jaeger: it checks the spans the services send, and the answers'
//! `X-Trace-Id`, not how you wrote the code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use support::binary::{lines_until, start_step};
use support::{Collector, SpanSeen, header, request, spans_of, start_service2, traced};

mod support;

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_slow_on_purpose() {
    hints_only();
    let collector = Collector::start();
    let (_service2, url, mut lines) = start_service2(&collector.url);
    lines_until(&mut lines, "listening on").await;

    let slow = kept_trace(request("GET", &format!("{url}/?slow=true"))).await;
    let slow = server_span(&collector, &slow, "service2").await;
    assert!(
        millis(&slow) >= 300,
        "service2's span for GET /?slow=true lasted {} ms: it should last 300 ms or more, as \
         a request that is slow on purpose does",
        millis(&slow)
    );

    let plain = kept_trace(request("GET", &format!("{url}/"))).await;
    let plain = server_span(&collector, &plain, "service2").await;
    assert!(
        millis(&plain) < 300,
        "service2's span for GET / (no ?slow=true) lasted {} ms: only ?slow=true should wait",
        millis(&plain)
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_keep_one_trace_in_ten() {
    hints_only();
    let collector = Collector::start();
    let (_service2, url, mut lines) = start_service2(&collector.url);
    lines_until(&mut lines, "listening on").await;

    // A trace that is kept has an id in X-Trace-Id; a dropped one has none.
    let mut kept = 0;
    for _ in 0..200 {
        if traced_answer(request("GET", &format!("{url}/"))).await.is_some() {
            kept += 1;
        }
    }
    assert!(
        (2..=50).contains(&kept),
        "{kept} of 200 requests to service2 were traced (their answers had X-Trace-Id): about \
         one in ten should be"
    );

    // The caller decided: its decision holds, whatever the ratio would say
    // of the trace id (this one's last 16 digits make the ratio drop it).
    let sampled = "00-4bf92f3577b34da6ffffffffffffffff-00f067aa0ba902b7-01";
    let answer =
        traced_answer(request("GET", &format!("{url}/")).insert_header(("traceparent", sampled)))
            .await;
    assert_eq!(
        answer.as_deref(),
        Some("4bf92f3577b34da6ffffffffffffffff"),
        "a request whose traceparent says \"sampled\" (-01) was not traced: the caller has kept \
         its trace, so service2 must keep its part. The ratio decides only for a trace's first \
         span."
    );
    let not_sampled = "00-4bf92f3577b34da60000000000000000-00f067aa0ba902b7-00";
    let answer = traced_answer(
        request("GET", &format!("{url}/")).insert_header(("traceparent", not_sampled)),
    )
    .await;
    assert_eq!(
        answer, None,
        "a request whose traceparent says \"not sampled\" (-00) was traced: the caller dropped \
         its trace, so service2 must drop its part"
    );

    // Bookkeeping is still never traced.
    for _ in 0..50 {
        let answer = traced_answer(request("GET", &format!("{url}/healthz"))).await;
        assert_eq!(
            answer, None,
            "a health check (GET /healthz) was traced: health checks should all still be \
             dropped, whatever the ratio"
        );
    }
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_3_a_span_for_the_xml() {
    hints_only();
    let collector = Collector::start();
    let (_step, ports) = start_step(&traced(&collector.url)).await;
    let url = format!("http://127.0.0.1:{}/", ports[1]);

    let xml = || request("GET", &url).insert_header(("accept", "application/xml"));
    let trace_id = a_traced_answer(xml).await;
    // The gateway's request span ends after the gateway's other spans: once
    // it has come, they have.
    let spans = collector
        .trace(&trace_id, |spans| !spans_of(spans, "gateway", SpanKind::Server).is_empty())
        .await;
    let request_span = spans_of(&spans, "gateway", SpanKind::Server)[0];
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    let Some(to_xml) = spans.iter().find(|span| span.service == "gateway" && span.name == "to_xml")
    else {
        panic!(
            "the gateway's trace of GET / with Accept: application/xml has no span named \
             to_xml; its spans: {names:?}. The conversion to XML should show in the trace as a \
             span of its own."
        )
    };
    assert_eq!(
        to_xml.parent_span_id, request_span.span_id,
        "to_xml's span should be a child of the request's span ({})",
        request_span.name
    );
    assert_eq!(
        to_xml.attributes.get("services").map(String::as_str),
        Some("2"),
        "to_xml's span should say how many services' parts it converted, as its attribute \
         `services` (2: service1 and service2); its attributes: {:?}",
        to_xml.attributes
    );
}

/// Sends `request`, which must be answered 200, and returns the trace id of
/// the answer: None when the request was not traced.
async fn traced_answer(request: awc::ClientRequest) -> Option<String> {
    let mut response = request.send().await.expect("an answer");
    let _ = response.body().await;
    assert_eq!(response.status(), StatusCode::OK, "the step answered an error");
    header(&response, "x-trace-id").map(str::to_string)
}

/// Sends `request` as part of a trace its caller keeps (a new trace id,
/// "sampled" in `traceparent`), so that the services keep it too, whatever
/// their own sampling would say (exercise 2); returns the trace id.
async fn kept_trace(request: awc::ClientRequest) -> String {
    static TRACES: AtomicU64 = AtomicU64::new(1);
    let since_1970 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let trace_id = format!(
        "{:016x}{:016x}",
        since_1970.as_nanos() as u64,
        TRACES.fetch_add(1, Ordering::Relaxed)
    );
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let answered = traced_answer(request.insert_header(("traceparent", traceparent))).await;
    assert_eq!(
        answered.as_deref(),
        Some(trace_id.as_str()),
        "the step did not keep its caller's trace"
    );
    trace_id
}

/// Sends requests made by `request` until one is traced, and returns its
/// trace id. The gateway starts a trace of its own for each request (a
/// client's `traceparent` does not choose it), so with exercise 2's one in
/// ten, about one request in ten is; with every request traced, the first.
async fn a_traced_answer(request: impl Fn() -> awc::ClientRequest) -> String {
    for _ in 0..200 {
        if let Some(trace_id) = traced_answer(request()).await {
            return trace_id;
        }
    }
    panic!("none of 200 requests through the gateway was traced (no X-Trace-Id)")
}

/// The server span of `service` in the trace `trace_id`, once it arrives.
async fn server_span(collector: &Collector, trace_id: &str, service: &str) -> SpanSeen {
    let has_it = |spans: &[SpanSeen]| !spans_of(spans, service, SpanKind::Server).is_empty();
    let spans = collector.trace(trace_id, has_it).await;
    spans_of(&spans, service, SpanKind::Server)[0].clone()
}

fn millis(span: &SpanSeen) -> u64 {
    (span.end - span.start) / 1_000_000
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
