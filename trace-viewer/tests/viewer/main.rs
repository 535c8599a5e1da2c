//! The viewer as a learner meets it: step 08's real binary sends it spans,
//! and its page shows the trace; broken bodies are refused; memory is bounded.
//! What a hostile sender can do to it: `hostile.rs`; the page, as Jaeger's
//! screens: `page.rs`, and in a real browser, `browser.rs`.

mod browser;
mod hostile;
mod page;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Data;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use trace_viewer::store::{MAX_SPANS, Span, Store};

/// The longest any test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

struct Viewer {
    otlp_url: String,
    page_url: String,
    store: Data<Mutex<Store>>,
}

/// The viewer, in this process, on free ports.
fn start_viewer(keep: usize) -> Viewer {
    let (otlp, page) =
        (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
    let otlp_url = format!("http://{}", otlp.local_addr().unwrap());
    let page_url = format!("http://{}/", page.local_addr().unwrap());
    let store = Data::new(Mutex::new(Store::new(keep)));
    let (receiver, page) = trace_viewer::servers(otlp, page, store.clone()).unwrap();
    actix_web::rt::spawn(receiver);
    actix_web::rt::spawn(page);
    Viewer { otlp_url, page_url, store }
}

impl Viewer {
    /// Waits until the spans of `trace_id` satisfy `done`, and returns them.
    async fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans = {
                let snapshot = self.store.lock().unwrap().snapshot();
                let trace = snapshot.traces.into_iter().find(|trace| trace.id == trace_id);
                trace.map(|trace| trace.spans.clone()).unwrap_or_default()
            };
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "trace {trace_id} never arrived whole: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn page(&self) -> String {
        let mut response = awc::Client::default().get(&self.page_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // Far above what the page may be: a page too long fails the test, not the read.
        let body = response.body().limit(256 * 1024 * 1024).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    async fn post(&self, content_type: &str, body: Vec<u8>) -> (StatusCode, String) {
        let (status, body) = self.post_bytes(content_type, body).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn post_bytes(&self, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let url = format!("{}/v1/traces", self.otlp_url);
        let request = awc::Client::default().post(url).content_type(content_type);
        let mut response = request.send_body(body).await.unwrap();
        let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
        (response.status(), body.to_vec())
    }
}

/// Step 08's binary, built if it is not.
fn step08_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let binary =
        target.join("debug").join(format!("step08-tracing{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "step08-tracing"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(built.success(), "cannot build step 08");
    }
    binary
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// GETs `path` through the gateway; the status and the trace id answered.
async fn through_gateway(gateway: &str, path: &str) -> Option<(StatusCode, String)> {
    let request =
        awc::Client::default().get(format!("{gateway}{path}")).bearer_auth("workshop-key");
    let response = request.send().await.ok()?;
    let trace_id = response.headers().get("x-trace-id")?.to_str().ok()?.to_string();
    Some((response.status(), trace_id))
}

/// Step 08's real binary, on free ports, sending its spans to `viewer`
/// every 50 ms (instead of 5 s); ready once the registry says service1 and
/// service2 pass their checks, which traces nothing. Its gateway's URL.
async fn start_step08(viewer: &Viewer) -> (tokio::process::Child, String) {
    let ports = free_ports(4);
    let mut step = tokio::process::Command::new(step08_binary())
        .env_remove("BIND_HOST")
        .env("REGISTRY_PORT", ports[0].to_string())
        .env("REGISTRY_URL", format!("http://127.0.0.1:{}", ports[0]))
        .env("GATEWAY_PORT", ports[1].to_string())
        .env("SERVICE1_PORT", ports[2].to_string())
        .env("SERVICE2_PORT", ports[3].to_string())
        .env("OTEL_SDK_DISABLED", "false")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &viewer.otlp_url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(step.stdout.take().unwrap()).lines();
    let mut waiting: Vec<String> = [("service1", ports[2]), ("service2", ports[3])]
        .iter()
        .map(|(service, port)| format!("check service:{service}-127.0.0.1-{port} is now passing"))
        .collect();
    let (deadline, mut printed) = (Instant::now() + PATIENCE, String::new());
    while !waiting.is_empty() {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
        let Ok(Ok(Some(line))) = line else { panic!("step 08 never got ready:\n{printed}") };
        waiting.retain(|wanted| !line.contains(wanted.as_str()));
        printed += &line;
        printed.push('\n');
    }
    // Its output read on, or the step would wait on a full pipe.
    actix_web::rt::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (step, format!("http://127.0.0.1:{}", ports[1]))
}

/// Whether a trace through the gateway to service1 holds everything up to
/// service2's two answers and the gateway's own span, which ends last.
fn whole(spans: &[Span]) -> bool {
    let of = |service: &'static str| spans.iter().filter(move |span| span.service == service);
    of("service2").count() == 2
        && of("gateway").any(|span| span.parent_span_id.is_empty())
        && of("service1").any(|span| span.name == "GET /{any:.*}")
}

#[actix_web::test]
async fn a_request_through_step_08_is_one_trace_on_the_page() {
    let viewer = start_viewer(100);
    let (mut step, gateway) = start_step08(&viewer).await;
    let (status, trace_id) = through_gateway(&gateway, "/api/service1/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let spans = viewer.trace(&trace_id, whole).await;

    let of = |spans: &[Span], service: &str| -> Vec<Span> {
        spans.iter().filter(|span| span.service == service).cloned().collect()
    };
    let child_of = |parent: &Span, service: &str, name: &str| -> Vec<Span> {
        let children = spans.iter().filter(|span| span.parent_span_id == parent.span_id);
        children.filter(|span| span.service == service && span.name == name).cloned().collect()
    };

    // gateway's request -> its call -> service1's request -> two calls ->
    // one service2 request under each.
    let root = of(&spans, "gateway").into_iter().find(|span| span.parent_span_id.is_empty());
    let root = root.expect("the gateway's span is the root");
    assert_eq!(root.name, "GET /api/service1");
    let call = &child_of(&root, "gateway", "GET service1")[..];
    assert_eq!(call.len(), 1, "{spans:#?}");
    let service1 = &child_of(&call[0], "service1", "GET /{any:.*}")[..];
    assert_eq!(service1.len(), 1, "{spans:#?}");
    let calls = child_of(&service1[0], "service1", "GET service2");
    assert_eq!(calls.len(), 2, "{spans:#?}");
    for call in &calls {
        assert_eq!(child_of(call, "service2", "GET /{any:.*}").len(), 1, "{spans:#?}");
    }
    // The breaker's decision is an event of service1's span.
    let events: Vec<&str> = service1[0].events.iter().map(|(_, event)| event.as_str()).collect();
    assert!(events.iter().any(|event| event.contains("lets the call through")), "{events:?}");

    let page = viewer.page().await;
    assert!(page.contains(&format!("<article class=\"trace\" id=\"{trace_id}\">")), "{page}");
    assert!(page.contains("gateway → service1: "), "{page}");
    assert!(page.contains("service1 → service2: "), "{page}");
    assert!(page.contains("GET /{any:.*}"), "{page}");

    step.start_kill().unwrap();
    step.wait().await.unwrap();
}

/// An export of `spans_per_trace` spans per trace id in `trace_ids`, from `service`.
fn export(service: &str, trace_ids: &[[u8; 16]], spans_per_trace: usize) -> Vec<u8> {
    let spans = trace_ids.iter().flat_map(|trace_id| {
        (0..spans_per_trace).map(move |n| OtlpSpan {
            trace_id: trace_id.to_vec(),
            span_id: (n as u64 + 1).to_be_bytes().to_vec(),
            name: format!("GET /{n} <b>"),
            // Trace n starts at n ms: its order, whatever order it arrives in.
            start_time_unix_nano: 1_000_000 * u64::from(trace_id[0]),
            end_time_unix_nano: 1_000_000 * u64::from(trace_id[0]) + 500_000,
            ..OtlpSpan::default()
        })
    });
    export_spans(service, spans.collect())
}

/// An export of `spans`, from `service`.
fn export_spans(service: &str, spans: Vec<OtlpSpan>) -> Vec<u8> {
    let name = AnyValue { value: Some(any_value::Value::StringValue(service.into())) };
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(name),
            ..KeyValue::default()
        }],
        ..Resource::default()
    };
    let scope = ScopeSpans { spans, ..ScopeSpans::default() };
    let resource_spans = ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![scope],
        ..ResourceSpans::default()
    };
    ExportTraceServiceRequest { resource_spans: vec![resource_spans] }.encode_to_vec()
}

/// A chain of `spans` spans, each the child of the one before, with
/// `events` one-letter events each: about 764 KB for 1,000 and 50.
pub(crate) fn chain(trace_id: [u8; 16], spans: u64, events: u64) -> Vec<OtlpSpan> {
    let span = |n: u64| OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        parent_span_id: if n == 0 { vec![] } else { n.to_be_bytes().to_vec() },
        name: "GET /chain".into(),
        start_time_unix_nano: 1_000 * n,
        end_time_unix_nano: 1_000 * (2 * spans - n),
        events: (0..events)
            .map(|k| Event { time_unix_nano: 1_000 * n + k, name: "x".into(), ..Event::default() })
            .collect(),
        ..OtlpSpan::default()
    };
    (0..spans).map(span).collect()
}

/// One span of its own trace, named `name`, with one event `event`.
pub(crate) fn one_span(trace_id: [u8; 16], span_id: u64, name: &str, event: &str) -> OtlpSpan {
    OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_be_bytes().to_vec(),
        name: name.into(),
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 9_000,
        events: vec![Event { time_unix_nano: 2_000, name: event.into(), ..Event::default() }],
        ..OtlpSpan::default()
    }
}

const PROTOBUF: &str = "application/x-protobuf";

#[actix_web::test]
async fn a_broken_body_is_refused_and_the_viewer_keeps_receiving() {
    let viewer = start_viewer(100);

    let (status, body) = viewer.post(PROTOBUF, b"\xff\xff\xff not protobuf".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not an OTLP ExportTraceServiceRequest"), "{body}");

    let (status, body) = viewer.post("application/json", b"{\"resourceSpans\":[]}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"), "{body}");

    let (status, _) = viewer.post(PROTOBUF, vec![0; trace_viewer::otlp::MAX_BODY + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Still receiving: the next export is kept and shown, escaped.
    let (status, _) = viewer.post(PROTOBUF, export("service<9>", &[[7; 16]], 1)).await;
    assert_eq!(status, StatusCode::OK);
    let page = viewer.page().await;
    let id = "07".repeat(16);
    assert!(page.contains(&format!("<article class=\"trace\" id=\"{id}\">")), "{page}");
    assert!(page.contains("<span class=\"facts\">1 spans · 500µs</span>"), "{page}");
    assert!(page.contains("service&lt;9&gt;") && page.contains("GET /0 &lt;b&gt;"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
}

#[actix_web::test]
async fn only_the_last_traces_are_kept_and_only_so_many_spans_each() {
    let viewer = start_viewer(3);
    let trace_ids: Vec<[u8; 16]> = (1..=5).map(|n| [n; 16]).collect();
    for trace_id in &trace_ids {
        let (status, _) = viewer.post(PROTOBUF, export("service1", &[*trace_id], 2)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let kept = || -> Vec<String> {
        let snapshot = viewer.store.lock().unwrap().snapshot();
        snapshot.traces.iter().map(|trace| trace.id.clone()).collect()
    };
    let hex = |n: u8| format!("{n:02x}").repeat(16);
    assert_eq!(kept(), [hex(5), hex(4), hex(3)]);
    let page = viewer.page().await;
    assert!(!page.contains(&hex(1)) && !page.contains(&hex(2)), "{page}");
    let (newest, oldest) = (page.find(&hex(5)).unwrap(), page.find(&hex(3)).unwrap());
    assert!(newest < oldest, "newest first: {page}");

    // A trace that started later but arrived earlier (each service sends
    // its own batches) is still shown first.
    for trace_id in [[7; 16], [6; 16]] {
        viewer.post(PROTOBUF, export("service1", &[trace_id], 1)).await;
    }
    assert_eq!(kept(), [hex(7), hex(6), hex(5)]);

    // One trace with more spans than a trace keeps.
    let (status, _) = viewer.post(PROTOBUF, export("service2", &[[9; 16]], MAX_SPANS + 10)).await;
    assert_eq!(status, StatusCode::OK);
    let snapshot = viewer.store.lock().unwrap().snapshot();
    let trace = &snapshot.traces[0];
    assert_eq!((trace.spans.len(), trace.dropped.over_limit), (MAX_SPANS, 10));
    assert_eq!(snapshot.traces.len(), 3);
}

#[test]
fn a_port_in_use_says_what_to_do() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_trace-viewer"))
        .args(["--otlp-port", &port, "--ui-port", &free_ports(1)[0].to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!("127.0.0.1:{port} (OTLP): the port is already in use")),
        "{said}"
    );
    assert!(said.contains("Is Jaeger, or another trace-viewer, still running?"), "{said}");
    assert!(said.contains("--otlp-port <N>"), "{said}");
}
