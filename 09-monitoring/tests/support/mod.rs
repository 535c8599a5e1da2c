//! What more than one test file of this step needs.

#![allow(dead_code)] // each test file uses some of it

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Attribute, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use serde_json::{Value, json};
use step09_monitoring::gateway::{self, WORKSHOP_KEY};
use step09_monitoring::{BreakerOptions, RegistrationOptions, registry, service1};
use tokio::process::Child;
use tokio::sync::mpsc;

pub mod binary;

/// The longest any test waits for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a server on a free port and returns its base URL.
pub fn start(server: impl FnOnce(TcpListener) -> std::io::Result<Server>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    actix_web::rt::spawn(server(listener).unwrap());
    url
}

/// A URL where nothing listens: a port free a moment ago, below the range
/// the OS hands out for port 0 (32768 and up on Linux, 49152 and up
/// elsewhere), so that no server another test starts meanwhile can get it.
pub fn nothing_listening() -> String {
    let free = (20000..30000).find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok());
    format!("http://127.0.0.1:{}", free.expect("a free port from 20000 to 29999"))
}

/// Registers `url` as a passing instance of `service`, as a service does.
pub async fn register_passing(registry_url: &str, service: &str, url: &str) {
    register(registry_url, service, url, json!({ "TTL": "1m", "Status": "passing" })).await;
}

/// Registers `url` as an instance of `service` with `check`.
pub async fn register(registry_url: &str, service: &str, url: &str, check: Value) {
    let address: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let registration = json!({
        "Name": service,
        "ID": format!("{service}-{address}"),
        "Address": address.ip().to_string(),
        "Port": address.port(),
        "Check": check,
    });
    let response = awc::Client::default()
        .put(format!("{registry_url}/v1/agent/service/register"))
        .send_json(&registration)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// How a service started by a test registers (or finds others).
pub fn registration(registry_url: &str) -> RegistrationOptions {
    RegistrationOptions {
        registry_url: registry_url.to_string(),
        check_interval: Duration::from_secs(1),
        registry_token: None,
    }
}

/// Circuit breakers as the services have them, but quicker to close again.
pub fn breaker_options() -> BreakerOptions {
    BreakerOptions {
        breaker_failures: 3,
        breaker_open_for: Duration::from_secs(1),
        breaker_max_open_for: Duration::from_secs(4),
    }
}

/// Starts service1, finding service2 in the registry at `registry_url` and
/// giving it `service2_timeout` to answer; returns service1's URL.
pub fn start_service1(registry_url: &str, service2_timeout: Duration) -> String {
    let options = service1::Options {
        port: 0,
        service2_timeout,
        random_delay: Duration::ZERO,
        registration: registration(registry_url),
        breaker: breaker_options(),
    };
    start(|listener| service1::server(listener, options))
}

/// A gateway finding services in the registry at `registry_url`.
pub fn gateway_options(registry_url: &str) -> gateway::Options {
    gateway::Options {
        port: 0,
        api_key: None,
        upstream_timeout: Duration::from_millis(300),
        max_body_bytes: 64,
        registration: registration(registry_url),
        breaker: breaker_options(),
    }
}

pub fn start_gateway(options: gateway::Options) -> String {
    start(|listener| gateway::server(listener, options))
}

/// A registry where each `(service, url)` is a passing instance, and a
/// gateway finding them there; returns the gateway's URL.
pub async fn start_gateway_with(instances: &[(&str, &str)]) -> String {
    let registry_url = start(registry::server);
    for (service, url) in instances {
        register_passing(&registry_url, service, url).await;
    }
    start_gateway(gateway_options(&registry_url))
}

/// A request to the gateway with the workshop's key.
pub fn request(method: &str, url: &str) -> awc::ClientRequest {
    awc::Client::default()
        .request(method.parse().unwrap(), url)
        .insert_header(("authorization", format!("Bearer {WORKSHOP_KEY}")))
}

pub fn header<'a, S>(response: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|value| value.to_str().ok())
}

/// GETs `url`; returns the status, the content type and the JSON body.
pub async fn get(url: &str) -> (StatusCode, String, Value) {
    let mut response = awc::Client::default().get(url).send().await.unwrap();
    let content_type = header(&response, "content-type").unwrap_or_default().to_string();
    let body = response.json().await.unwrap();
    (response.status(), content_type, body)
}

/// A span as the collector received it.
#[derive(Clone, Debug)]
pub struct SpanSeen {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: SpanKind,
    pub start: u64,
    pub end: u64,
    pub attributes: BTreeMap<String, String>,
    /// The names of its events: the log lines written inside it.
    pub events: Vec<String>,
    pub status: SpanStatus,
    /// The spans it links to, each as (trace id, span id).
    pub links: Vec<(String, String)>,
}

/// An OTLP/HTTP collector on a free port, keeping every span it receives,
/// or refusing them with 503 while `refusing` is set.
#[derive(Default)]
pub struct Collector {
    pub url: String,
    pub spans: Mutex<Vec<SpanSeen>>,
    pub refusing: AtomicBool,
    pub exports: AtomicUsize,
}

impl Collector {
    pub fn start() -> web::Data<Collector> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let collector = web::Data::new(Collector { url, ..Collector::default() });
        let kept = collector.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(kept.clone()).route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        collector
    }

    /// Waits until the spans of `trace_id` satisfy `done`, and returns them.
    pub async fn trace(&self, trace_id: &str, done: impl Fn(&[SpanSeen]) -> bool) -> Vec<SpanSeen> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans: Vec<SpanSeen> = {
                let spans = self.spans.lock().unwrap();
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

async fn receive(collector: web::Data<Collector>, body: Bytes) -> HttpResponse {
    collector.exports.fetch_add(1, Ordering::SeqCst);
    if collector.refusing.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let resource = to_map(&resource_spans.resource.unwrap_or_default().attributes);
        let service = resource.get("service.name").cloned().unwrap_or_default();
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
                links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
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
        other => format!("{other:?}"),
    };
    attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn spans_of<'a>(spans: &'a [SpanSeen], service: &str, kind: SpanKind) -> Vec<&'a SpanSeen> {
    spans.iter().filter(|span| span.service == service && span.kind == kind).collect()
}

/// What sends a service's spans to `collector_url`, every 50 ms (instead
/// of every 5 s).
pub fn traced(collector_url: &str) -> [(&'static str, String); 3] {
    [
        ("OTEL_SDK_DISABLED", "false".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url.into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
    ]
}

/// service2 alone, with no registry (it only logs that it cannot
/// register); the service, its URL and its output in lines.
pub fn start_service2(collector_url: &str) -> (Child, String, mpsc::UnboundedReceiver<String>) {
    let ports = binary::free_ports(2);
    let env = [
        ("RUST_LOG", "info".to_string()),
        ("REGISTRY_URL", format!("http://127.0.0.1:{}", ports[1])),
    ];
    let args = ["service2", "--port", &ports[0].to_string()];
    let (process, lines) = binary::spawn(&args, &[&env[..], &traced(collector_url)].concat());
    (process, format!("http://127.0.0.1:{}", ports[0]), lines)
}

/// One sample of a metric: its name, its labels and its value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Reads `/metrics` at `url`; checks that it is Prometheus's text format.
pub async fn scrape(url: &str) -> Vec<Sample> {
    let mut response = awc::Client::default().get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let body = response.body().limit(1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).map(parse).collect()
}

/// `name{a="1",b="2"} 3` (label values here never hold `",` or `"}`).
fn parse(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let labels = labels.trim_end_matches('}');
    let labels = labels
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect();
    Sample { name: name.to_string(), labels, value: value.parse().unwrap() }
}

/// The value of the sample of `name` with (at least) `labels`, or 0.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let has = |s: &Sample| labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v));
    let found = samples.iter().find(|sample| sample.name == name && has(sample));
    found.map_or(0.0, |sample| sample.value)
}
