//! What Jaeger would receive: the real binary runs every service, and the
//! test plays the OTLP collector, decoding the spans they send.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Attribute, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use step10_cqrs_reporting::gateway::WORKSHOP_KEY;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const PROGRAM: &str = env!("CARGO_BIN_EXE_step10-cqrs-reporting");

/// The longest any test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct SpanSeen {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    start: u64,
    end: u64,
    attributes: BTreeMap<String, String>,
    /// The names of its events: the log lines written inside it.
    events: Vec<String>,
    status: SpanStatus,
}

impl SpanSeen {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// An OTLP/HTTP collector on a free port, keeping every span it receives,
/// or refusing them with 503 while `refusing` is set.
struct Collector {
    url: String,
    received: web::Data<Received>,
}

/// What the collector received.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<SpanSeen>>,
    refusing: AtomicBool,
    exports: AtomicUsize,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = web::Data::new(Received::default());
        let kept = received.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(kept.clone()).route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Collector { url, received }
    }

    /// Waits until the spans of `trace_id` satisfy `done`, and returns them.
    async fn trace(&self, trace_id: &str, done: impl Fn(&[SpanSeen]) -> bool) -> Vec<SpanSeen> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans: Vec<SpanSeen> = {
                let spans = self.received.spans.lock().unwrap();
                spans.iter().filter(|span| span.trace_id == trace_id).cloned().collect()
            };
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "trace {trace_id} never arrived whole: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(received: web::Data<Received>, body: Bytes) -> HttpResponse {
    received.exports.fetch_add(1, Ordering::SeqCst);
    if received.refusing.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = received.spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let attributes = to_map(&resource.attributes);
        let service = attributes.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            spans.push(SpanSeen {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind(),
                name: span.name,
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano,
                attributes: to_map(&span.attributes),
                events: span.events.into_iter().map(|event| event.name).collect(),
                status: span.status.map_or(SpanStatus::Unset, |status| status.code()),
            });
        }
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

fn to_map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    let text = |value: &Option<Attribute>| match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        Some(AnyValue::BoolValue(flag)) => flag.to_string(),
        Some(AnyValue::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    };
    attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` ports free a moment ago, all different: each is held until all are
/// chosen.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// The whole step, run by the launcher on free ports.
struct Step {
    _launcher: Child,
    gateway_url: String,
}

impl Step {
    async fn start(collector_url: &str) -> Step {
        let ports = free_ports(7);
        let (registry_port, gateway_port) = (ports[0], ports[1]);
        let env = [
            ("REGISTRY_PORT", registry_port.to_string()),
            ("REGISTRY_URL", format!("http://127.0.0.1:{registry_port}")),
            ("GATEWAY_PORT", gateway_port.to_string()),
            ("SERVICE1_PORT", ports[2].to_string()),
            ("SERVICE2_PORT", ports[3].to_string()),
            ("USERS_PORT", ports[4].to_string()),
            ("ACCOUNTS_PORT", ports[5].to_string()),
            ("REPORTS_PORT", ports[6].to_string()),
        ];
        let (launcher, mut lines) = spawn(&[], &env, collector_url);
        let step =
            Step { _launcher: launcher, gateway_url: format!("http://127.0.0.1:{gateway_port}") };
        // Ready when a call through the gateway reaches service2.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answered = step.get("/api/service1/", None).await;
            if answered.is_some_and(|(status, _)| status == StatusCode::OK) {
                return step;
            }
            if Instant::now() > deadline {
                let mut said = Vec::new();
                while let Ok(line) = lines.try_recv() {
                    said.push(line);
                }
                panic!("the step never answered through the gateway:\n{}", said.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GETs `path` from the gateway; the status and the trace id it answered.
    async fn get(&self, path: &str, traceparent: Option<&str>) -> Option<(StatusCode, String)> {
        let mut request = awc::Client::default()
            .get(format!("{}{path}", self.gateway_url))
            .bearer_auth(WORKSHOP_KEY);
        if let Some(traceparent) = traceparent {
            request = request.insert_header(("traceparent", traceparent));
        }
        let response = request.send().await.ok()?;
        let trace_id = response.headers().get("x-trace-id")?.to_str().ok()?.to_string();
        Some((response.status(), trace_id))
    }
}

fn spans_of<'a>(spans: &'a [SpanSeen], service: &str, kind: SpanKind) -> Vec<&'a SpanSeen> {
    spans.iter().filter(|span| span.service == service && span.kind == kind).collect()
}

/// Whether a trace through the gateway to service1 holds everything up to
/// service2's two answers and the gateway's own span, which ends last.
fn whole(spans: &[SpanSeen]) -> bool {
    spans_of(spans, "service2", SpanKind::Server).len() == 2
        && spans_of(spans, "service1", SpanKind::Server).len() == 1
        && spans_of(spans, "gateway", SpanKind::Server).len() == 1
}

#[actix_web::test]
async fn one_request_through_every_service_is_one_trace() {
    let collector = Collector::start();
    let step = Step::start(&collector.url).await;

    let (status, trace_id) = step.get("/api/service1/", None).await.expect("an answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let spans = collector.trace(&trace_id, whole).await;

    // The gateway's span is the root: the client sent no traceparent.
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.parent_span_id, "");
    assert_eq!(gateway.name, "GET /api/service1");
    assert_eq!(gateway.attribute("http.route"), "/api/{service}/{path}");
    assert_eq!(gateway.attribute("http.request.method"), "GET");
    assert_eq!(gateway.attribute("http.response.status_code"), "200");
    assert_eq!(gateway.status, SpanStatus::Unset);

    // gateway -> service1: the gateway's client span is the parent of
    // service1's server span.
    let calls: Vec<_> = spans_of(&spans, "gateway", SpanKind::Client)
        .into_iter()
        .filter(|span| span.name == "GET service1")
        .collect();
    assert_eq!(calls.len(), 1, "{spans:#?}");
    assert_eq!(calls[0].parent_span_id, gateway.span_id);
    let service1 = spans_of(&spans, "service1", SpanKind::Server)[0];
    assert_eq!(service1.parent_span_id, calls[0].span_id);
    assert_eq!(service1.attribute("http.route"), "/{any:.*}");
    assert_eq!(service1.attribute("http.response.status_code"), "200");

    // service1 -> service2, twice at once: two sibling client spans that
    // overlap in time, each the parent of one of service2's server spans.
    let calls: Vec<_> = spans_of(&spans, "service1", SpanKind::Client)
        .into_iter()
        .filter(|span| span.name == "GET service2")
        .collect();
    assert_eq!(calls.len(), 2, "{spans:#?}");
    assert!(calls.iter().all(|call| call.parent_span_id == service1.span_id));
    assert!(calls[0].start < calls[1].end && calls[1].start < calls[0].end, "not concurrent");
    let mut parents: Vec<&str> = spans_of(&spans, "service2", SpanKind::Server)
        .iter()
        .map(|span| span.parent_span_id.as_str())
        .collect();
    parents.sort();
    let mut call_ids: Vec<&str> = calls.iter().map(|call| call.span_id.as_str()).collect();
    call_ids.sort();
    assert_eq!(parents, call_ids);

    // The breaker's decision and the instances found are events of the
    // request's span.
    let events = service1.events.join("\n");
    assert!(events.contains("circuit for service2 at http://127.0.0.1:"), "{events}");
    assert!(events.contains(" lets the call through"), "{events}");
    assert!(
        events.contains("instances of service2") || events.contains("service2 at "),
        "{events}"
    );
}

#[actix_web::test]
async fn health_checks_and_registrations_are_not_traced() {
    let collector = Collector::start();
    let step = Step::start(&collector.url).await;
    // The step is ready once service2 passed a health check; now something
    // that is exported after them: a request and its whole trace.
    let (_, trace_id) = step.get("/api/service1/", None).await.expect("an answer");
    collector.trace(&trace_id, whole).await;

    let spans = collector.received.spans.lock().unwrap();
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert!(names.iter().all(|name| !name.contains("healthz")), "{names:?}");
    // Nor are the services' registrations, which no person asked for.
    assert!(names.iter().all(|name| !name.contains("/v1/agent/")), "{names:?}");
}

#[actix_web::test]
async fn a_failure_is_an_error_on_every_span_it_passes_through() {
    let collector = Collector::start();
    let step = Step::start(&collector.url).await;

    let (status, trace_id) = step.get("/api/service1/?fail=true", None).await.expect("an answer");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let spans = collector.trace(&trace_id, whole).await;

    for span in spans_of(&spans, "service2", SpanKind::Server) {
        assert_eq!(span.attribute("http.response.status_code"), "500");
        assert_eq!(span.attribute("error.type"), "500");
        assert_eq!(span.status, SpanStatus::Error);
    }
    for span in spans_of(&spans, "service1", SpanKind::Client) {
        if span.name == "GET service2" {
            assert_eq!(span.attribute("http.response.status_code"), "500");
            assert_eq!(span.status, SpanStatus::Error);
            // What went wrong is logged on the call that failed.
            let events = span.events.join("\n");
            assert!(events.contains("answered 500 Internal Server Error"), "{events}");
        }
    }
    let service1 = spans_of(&spans, "service1", SpanKind::Server)[0];
    assert_eq!(service1.attribute("http.response.status_code"), "502");
    assert_eq!(service1.status, SpanStatus::Error);
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.attribute("http.response.status_code"), "502");
    assert_eq!(gateway.status, SpanStatus::Error);
}

#[actix_web::test]
async fn a_client_error_is_recorded_but_is_not_an_error_of_the_server() {
    let collector = Collector::start();
    let step = Step::start(&collector.url).await;

    let (status, trace_id) = step.get("/api/service9/", None).await.expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let spans = collector
        .trace(&trace_id, |spans| !spans_of(spans, "gateway", SpanKind::Server).is_empty())
        .await;
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.attribute("http.response.status_code"), "404");
    assert_eq!(gateway.status, SpanStatus::Unset);
}

#[actix_web::test]
async fn a_caller_s_traceparent_is_continued() {
    let collector = Collector::start();
    let step = Step::start(&collector.url).await;

    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let (status, answered_id) =
        step.get("/api/service1/", Some(&traceparent)).await.expect("an answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answered_id, trace_id);
    let spans = collector.trace(trace_id, whole).await;
    let gateway = spans_of(&spans, "gateway", SpanKind::Server)[0];
    assert_eq!(gateway.parent_span_id, caller_span);
}

/// Runs the step's binary with `args` and `env`, its spans sent to
/// `collector_url` every 50 ms (instead of every 5 s); its output in lines.
fn spawn(
    args: &[&str],
    env: &[(&str, String)],
    collector_url: &str,
) -> (Child, mpsc::UnboundedReceiver<String>) {
    let mut command = Command::new(PROGRAM);
    command
        .args(args)
        .env_remove("BIND_HOST")
        .env_remove("OTEL_SDK_DISABLED")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("DATA_DIR", env!("CARGO_TARGET_TMPDIR"))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut process = command.spawn().expect("cannot start the step's binary");
    let (sender, lines) = mpsc::unbounded_channel();
    let outputs: [Box<dyn AsyncRead + Unpin + Send>; 2] =
        [Box::new(process.stdout.take().unwrap()), Box::new(process.stderr.take().unwrap())];
    for output in outputs {
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = sender.send(line);
            }
        });
    }
    (process, lines)
}

/// service2 alone, with no registry (it only logs that it cannot
/// register); the service, its URL and its output in lines.
fn start_service2(collector_url: &str) -> (Child, String, mpsc::UnboundedReceiver<String>) {
    let port = free_port().to_string();
    let env = [
        ("RUST_LOG", "info".to_string()),
        ("REGISTRY_URL", format!("http://127.0.0.1:{}", free_port())),
    ];
    let (process, lines) = spawn(&["service2", "--port", &port], &env, collector_url);
    (process, format!("http://127.0.0.1:{port}"), lines)
}

/// Waits for a line that contains `text`; every line read on the way.
async fn lines_until(lines: &mut mpsc::UnboundedReceiver<String>, text: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.recv().await {
            seen.push(line.clone());
            if line.contains(text) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "no line with {text:?} in:\n{}", seen.join("\n"));
    seen
}

async fn get_status(url: &str) -> StatusCode {
    awc::Client::default().get(url).send().await.expect("an answer").status()
}

#[actix_web::test]
async fn without_a_collector_a_service_answers_and_says_so_once() {
    let collector = Collector::start();
    collector.received.refusing.store(true, Ordering::SeqCst);
    let (mut service2, url, mut lines) = start_service2(&collector.url);
    let mut seen = lines_until(&mut lines, "listening on").await;

    // Requests while the collector refuses: every answer as usual, and
    // batch after batch fails to leave.
    let deadline = Instant::now() + PATIENCE;
    while collector.received.exports.load(Ordering::SeqCst) < 3 {
        assert_eq!(get_status(&format!("{url}/")).await, StatusCode::OK);
        assert!(Instant::now() < deadline, "service2 never tried to send its spans");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get_status(&format!("{url}/then")).await, StatusCode::OK);
    seen.extend(lines_until(&mut lines, "GET /then").await);
    let said: Vec<_> = seen.iter().filter(|line| line.contains("cannot send traces")).collect();
    assert_eq!(said.len(), 1, "{seen:#?}");
    assert!(said[0].contains(&collector.url), "{said:?}");

    // The collector accepts again: the service says so once, and spans arrive.
    collector.received.refusing.store(false, Ordering::SeqCst);
    let response = awc::Client::default().get(format!("{url}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let trace_id = response.headers().get("x-trace-id").unwrap().to_str().unwrap();
    lines_until(&mut lines, "sending traces to").await;
    collector.trace(trace_id, |spans| !spans.is_empty()).await;
    let _ = service2.start_kill();
}

#[actix_web::test]
async fn a_collector_url_without_http_is_refused_at_start() {
    let (mut service2, _, mut lines) = start_service2("127.0.0.1:4318");
    let said = lines_until(&mut lines, "OTEL_EXPORTER_OTLP_ENDPOINT").await;
    assert!(
        said.last()
            .unwrap()
            .contains("OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4318 is not an http:// URL"),
        "{said:?}"
    );
    let status = tokio::time::timeout(PATIENCE, service2.wait()).await.unwrap().unwrap();
    assert!(!status.success());
}
