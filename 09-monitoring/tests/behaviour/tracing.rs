//! What Jaeger would receive: the real binary runs every service, and the
//! test plays the OTLP collector, decoding the spans they send.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;

use crate::support::binary::{lines_until, start_step};
use crate::support::{Collector, PATIENCE, SpanSeen, request, spans_of, start_service2, traced};

/// GETs `path` from the gateway; the status and the trace id it answered.
async fn get(gateway: &str, path: &str, traceparent: Option<&str>) -> Option<(StatusCode, String)> {
    let mut request = request("GET", &format!("{gateway}{path}"));
    if let Some(traceparent) = traceparent {
        request = request.insert_header(("traceparent", traceparent));
    }
    let response = request.send().await.ok()?;
    let trace_id = response.headers().get("x-trace-id")?.to_str().ok()?.to_string();
    Some((response.status(), trace_id))
}

/// The client spans of `service`'s calls to `callee`.
fn client_spans<'a>(spans: &'a [SpanSeen], service: &str, callee: &str) -> Vec<&'a SpanSeen> {
    let name = format!("GET {callee}");
    spans_of(spans, service, SpanKind::Client)
        .into_iter()
        .filter(|span| span.name == name)
        .collect()
}

/// Whether a trace through the gateway to service1 holds everything up to
/// service2's two answers and the gateway's own span, which ends last.
fn whole(spans: &[SpanSeen]) -> bool {
    spans_of(spans, "service2", SpanKind::Server).len() == 2
        && spans_of(spans, "service1", SpanKind::Server).len() == 1
        && spans_of(spans, "gateway", SpanKind::Server).len() == 1
}

/// One run of the step for every kind of request, each checked in its trace.
#[actix_web::test]
async fn every_request_is_one_trace_through_the_services_it_reaches() {
    let collector = Collector::start();
    let (_step, ports) = start_step(&traced(&collector.url)).await;
    let gateway_url = format!("http://127.0.0.1:{}", ports[1]);

    let (status, trace_id) = get(&gateway_url, "/api/service1/", None).await.expect("an answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let spans = collector.trace(&trace_id, whole).await;

    // The gateway's span is the root: the client sent no traceparent.
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.parent_span_id, "");
    assert_eq!(gateway.name, "GET /api/service1");
    assert_eq!(gateway.attributes["http.route"], "/api/{service}/{path}");
    assert_eq!(gateway.attributes["http.request.method"], "GET");
    assert_eq!(gateway.attributes["http.response.status_code"], "200");
    assert_eq!(gateway.status, SpanStatus::Unset);

    // gateway -> service1: the gateway's client span is the parent of
    // service1's server span.
    let call = client_spans(&spans, "gateway", "service1");
    assert_eq!(call.len(), 1, "{spans:#?}");
    assert_eq!(call[0].parent_span_id, gateway.span_id);
    let service1 = spans_of(&spans, "service1", SpanKind::Server)[0];
    assert_eq!(service1.parent_span_id, call[0].span_id);
    assert_eq!(service1.attributes["http.route"], "/{any:.*}");
    assert_eq!(service1.attributes["http.response.status_code"], "200");

    // service1 -> service2, twice at once: two sibling client spans that
    // overlap in time, each the parent of one of service2's server spans.
    let calls = client_spans(&spans, "service1", "service2");
    assert_eq!(calls.len(), 2, "{spans:#?}");
    assert!(calls.iter().all(|call| call.parent_span_id == service1.span_id));
    assert!(calls[0].start < calls[1].end && calls[1].start < calls[0].end, "not concurrent");
    let parents: BTreeSet<&str> = spans_of(&spans, "service2", SpanKind::Server)
        .iter()
        .map(|span| span.parent_span_id.as_str())
        .collect();
    assert_eq!(parents, calls.iter().map(|call| call.span_id.as_str()).collect());

    // The breaker's decision and the instances found are events of the
    // request's span.
    let events = service1.events.join("\n");
    assert!(events.contains("circuit for service2 at http://127.0.0.1:"), "{events}");
    assert!(events.contains(" lets the call through"), "{events}");
    assert!(
        events.contains("instances of service2") || events.contains("service2 at "),
        "{events}"
    );

    // A client's traceparent does not choose the trace at the edge: "not
    // sampled" (-00) hides nothing, and a trace id of its choosing joins no
    // other request. Each request is a new trace, linked to the client's
    // span; behind the gateway, each service continues its caller's trace.
    let (chosen, client_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    for flags in ["01", "00"] {
        let traceparent = format!("00-{chosen}-{client_span}-{flags}");
        let (status, trace_id) =
            get(&gateway_url, "/api/service1/", Some(&traceparent)).await.expect("X-Trace-Id");
        assert_eq!(status, StatusCode::OK);
        assert_ne!(trace_id, chosen, "-{flags}");
        let spans = collector.trace(&trace_id, whole).await;
        let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
        assert_eq!(gateway.parent_span_id, "", "-{flags}");
        assert_eq!(gateway.links, [(chosen.to_string(), client_span.to_string())], "-{flags}");
        let call = client_spans(&spans, "gateway", "service1");
        let service1 = spans_of(&spans, "service1", SpanKind::Server)[0];
        assert_eq!(service1.parent_span_id, call[0].span_id);
    }
    assert!(collector.spans.lock().unwrap().iter().all(|span| span.trace_id != chosen));

    // A client error is recorded, but is not an error of the server.
    let (status, trace_id) = get(&gateway_url, "/api/service9/", None).await.expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let spans = collector
        .trace(&trace_id, |spans| !spans_of(spans, "gateway", SpanKind::Server).is_empty())
        .await;
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.attributes["http.response.status_code"], "404");
    assert_eq!(gateway.status, SpanStatus::Unset);

    // A failure is an error on every span it passes through.
    let (status, trace_id) =
        get(&gateway_url, "/api/service1/?fail=true", None).await.expect("an answer");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let spans = collector.trace(&trace_id, whole).await;
    for span in spans_of(&spans, "service2", SpanKind::Server) {
        assert_eq!(span.attributes["http.response.status_code"], "500");
        assert_eq!(span.attributes["error.type"], "500");
        assert_eq!(span.status, SpanStatus::Error);
    }
    for span in client_spans(&spans, "service1", "service2") {
        assert_eq!(span.attributes["http.response.status_code"], "500");
        assert_eq!(span.status, SpanStatus::Error);
    }
    for service in ["service1", "gateway"] {
        let server = spans_of(&spans, service, SpanKind::Server)[0];
        assert_eq!(server.attributes["http.response.status_code"], "502");
        assert_eq!(server.status, SpanStatus::Error);
    }
    // What went wrong is logged in the request that it failed.
    let service1 = spans_of(&spans, "service1", SpanKind::Server)[0];
    let events = service1.events.join("\n");
    assert!(events.contains("answered 500 Internal Server Error"), "{events}");

    // Not one health check or registration was traced (no person asked for
    // them), though many were made while these traces came.
    let spans = collector.spans.lock().unwrap();
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert!(names.iter().all(|name| !name.contains("healthz")), "{names:?}");
    assert!(names.iter().all(|name| !name.contains("/v1/agent/")), "{names:?}");
}

#[actix_web::test]
async fn without_a_collector_a_service_answers_and_says_so_once() {
    let collector = Collector::start();
    collector.refusing.store(true, Ordering::SeqCst);
    let (_service2, url, mut lines) = start_service2(&collector.url);
    let mut seen = lines_until(&mut lines, "listening on").await;
    let client = awc::Client::default();

    // Requests while the collector refuses: every answer as usual, and
    // batch after batch fails to leave.
    let deadline = Instant::now() + PATIENCE;
    while collector.exports.load(Ordering::SeqCst) < 3 {
        assert_eq!(client.get(format!("{url}/")).send().await.unwrap().status(), StatusCode::OK);
        assert!(Instant::now() < deadline, "service2 never tried to send its spans");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.get(format!("{url}/then")).send().await.unwrap().status(), StatusCode::OK);
    seen.extend(lines_until(&mut lines, "GET /then").await);
    let said: Vec<_> = seen.iter().filter(|line| line.contains("cannot send traces")).collect();
    assert_eq!(said.len(), 1, "{seen:#?}");
    assert!(said[0].contains(&collector.url), "{said:?}");

    // The collector accepts again: the service says so once, and spans arrive.
    collector.refusing.store(false, Ordering::SeqCst);
    let response = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let trace_id = response.headers().get("x-trace-id").unwrap().to_str().unwrap();
    lines_until(&mut lines, "sending traces to").await;
    collector.trace(trace_id, |spans| !spans.is_empty()).await;
}

#[actix_web::test]
async fn a_collector_url_without_http_is_refused_at_start() {
    let (mut service2, _, mut lines) = start_service2("127.0.0.1:4318");
    lines_until(&mut lines, "OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4318 is not an http:// URL")
        .await;
    let status = tokio::time::timeout(PATIENCE, service2.wait()).await.unwrap().unwrap();
    assert!(!status.success());
}
