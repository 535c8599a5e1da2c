//! Monitoring with Prometheus. Every service counts what it does (requests
//! it answers, calls it makes, its circuit breakers, its process) and serves
//! the numbers at `GET /metrics`, in Prometheus's text format, for a
//! Prometheus that finds it through the registry (see `prometheus/`).
//!
//! Names follow Prometheus's conventions (the unit in the name, `_total` at
//! the end of a counter), and every label takes few values (a route's
//! pattern, never its path): each combination of labels is a series that
//! Prometheus keeps. No `service` label: Prometheus adds it from what the
//! registry says of the instance; the registry's own metrics name the
//! services they count `service_name`, so as not to clash with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, web};
use awc::ClientResponse;
use metrics::{counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tracing::warn;

use crate::registry::Registry;
use crate::{Breakers, CallError};

/// Histogram buckets for durations, in seconds: fine below 10 ms, where
/// these services answer; every 50 ms or so up to 300 ms, where service1's
/// random delay spreads them; and up to the calls' 2 s timeouts.
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5];

/// What the metrics are kept in: one recorder per process, made the first
/// time a service starts.
struct Recorder {
    prometheus: PrometheusHandle,
    /// CPU, memory, open files and start time of the process, read from
    /// the operating system at each scrape.
    process: metrics_process::Collector,
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let prometheus = PrometheusBuilder::new()
            // Histograms, not summaries: Prometheus can add histograms of
            // several instances up, and compute any percentile from them.
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
            .expect("the buckets are not empty")
            // Counts go once idle. Gauges stay: they are states, set when
            // they change, and a state that holds is not idle.
            .idle_timeout(MetricKindMask::COUNTER | MetricKindMask::HISTOGRAM, Some(idle_after()))
            .install_recorder()
            .expect("nothing else records metrics in this process");
        keep_up(prometheus.clone());
        let process = metrics_process::Collector::default();
        process.describe();
        describe();
        Recorder { prometheus, process }
    })
}

/// How long a series may go without a new value before it is dropped:
/// labels come from outside (a service's name, an instance's address), and
/// a series stays only while what it names is called. `METRICS_IDLE_TIMEOUT`
/// ("30s") changes it for the whole process.
const IDLE_AFTER: Duration = Duration::from_secs(600);

fn idle_after() -> Duration {
    let Ok(text) = std::env::var("METRICS_IDLE_TIMEOUT") else { return IDLE_AFTER };
    humantime::parse_duration(&text).unwrap_or_else(|error| {
        warn!("METRICS_IDLE_TIMEOUT={text:?} is not a duration ({error}): using 10m");
        IDLE_AFTER
    })
}

/// Every few seconds, scraped or not, the histograms' samples go into their
/// buckets and idle series are dropped (rendering does both): a process
/// that no Prometheus scrapes would otherwise keep every sample.
fn keep_up(prometheus: PrometheusHandle) {
    let upkeep = move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let _one_at_a_time = rendering();
            let _ = prometheus.render_to_write(&mut std::io::sink());
        }
    };
    let thread = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(upkeep);
    thread.expect("a thread for the metrics' upkeep");
}

/// Rendering, and the upkeep, one at a time. Two at once can bring back a
/// histogram the other has just dropped as idle: empty, and then for good,
/// since the recorder no longer knows it (a series of a service gone).
fn rendering() -> MutexGuard<'static, ()> {
    static RENDERING: Mutex<()> = Mutex::new(());
    RENDERING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `# HELP` line of each metric: what it counts, in words.
fn describe() {
    describe_counter!("http_requests_total", "Requests answered, by method, route and status.");
    describe_histogram!("http_request_duration_seconds", "Time to answer, by method and route.");
    describe_counter!("upstream_requests_total", "Calls to other services, by how they ended.");
    describe_histogram!("upstream_request_duration_seconds", "Time a call to a service took.");
    describe_counter!("circuit_breaker_transitions_total", "Changes of state of each circuit.");
    describe_counter!("registry_checks_total", "Health checks run, by service and result.");
}

/// Makes sure the metrics are recorded from the start: anything recorded
/// before the recorder exists is lost.
pub fn init() {
    recorder();
}

/// `GET /metrics`: every metric of this process, in Prometheus's text format,
/// and what exists now: the state of each circuit of a service that has
/// breakers, and the registry's instances. Those are written at each scrape,
/// not kept as gauges, so that a circuit or a service gone leaves no series.
pub async fn metrics_page(
    breakers: Option<web::Data<Breakers>>,
    registry: Option<web::Data<Registry>>,
) -> HttpResponse {
    let recorder = recorder();
    recorder.process.collect();
    let mut page = {
        let _one_at_a_time = rendering();
        // Keeps the histograms from growing between scrapes.
        recorder.prometheus.run_upkeep();
        recorder.prometheus.render()
    };
    if let Some(breakers) = breakers {
        write_circuit_states(&mut page, &breakers.circuits());
    }
    if let Some(registry) = registry {
        write_instance_counts(&mut page, &registry.instance_counts());
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(page)
}

/// The route of a request that actix matched no pattern for, set by the
/// handler that serves it (the gateway's `/api/<service>/…`).
pub struct Route(pub &'static str);

/// Middleware: counts every request and times it, by method, route and
/// status.
pub async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let answer = next.call(request).await;
    let (status, route) = match &answer {
        Ok(response) => (response.status(), route_label(response.request())),
        Err(error) => (error.as_response_error().status_code(), "unmatched".to_string()),
    };
    let took = started.elapsed().as_secs_f64();
    counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.as_str().to_string())
        .increment(1);
    histogram!("http_request_duration_seconds", "method" => method, "route" => route).record(took);
    answer
}

/// A client may send any method at all: only the standard ones are labels.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    STANDARD.into_iter().find(|standard| *standard == method.as_str()).unwrap_or("other")
}

/// The route's pattern (`/{any:.*}`, `/v1/health/service/{service}`), never
/// the path itself: a path can take endless values, a pattern cannot.
fn route_label(request: &HttpRequest) -> String {
    if let Some(Route(route)) = request.extensions().get::<Route>() {
        return route.to_string();
    }
    request.match_pattern().unwrap_or_else(|| "unmatched".to_string())
}

/// Records a call to another service: how it ended and how long it took.
pub fn record_call(upstream: &str, outcome: &Result<ClientResponse, CallError>, took: Duration) {
    let outcome = match outcome {
        Ok(answer) if answer.status().is_success() => "2xx",
        Ok(answer) if answer.status().is_redirection() => "3xx",
        Ok(answer) if answer.status().is_client_error() => "4xx",
        Ok(_) => "5xx",
        Err(CallError::TimedOut) => "timeout",
        // Our own client's request was the trouble: the call was cut short.
        Err(error) if !error.is_upstream_fault() => "aborted",
        Err(_) => "no_answer",
    };
    let upstream = upstream.to_string();
    counter!("upstream_requests_total", "upstream" => upstream.clone(), "outcome" => outcome)
        .increment(1);
    histogram!("upstream_request_duration_seconds", "upstream" => upstream)
        .record(took.as_secs_f64());
}

/// The circuit for `upstream` at `instance` moved from `before` to `state`
/// (`closed`, `half_open` or `open`; the same when it is new).
pub fn record_circuit(upstream: &str, instance: &str, before: &'static str, state: &'static str) {
    if before != state {
        let labels = [("upstream", upstream), ("instance", instance), ("to", state)]
            .map(|(name, value)| (name, value.to_string()));
        counter!("circuit_breaker_transitions_total", &labels).increment(1);
    }
}

/// `circuit_breaker_state`: for each circuit, 1 for the state it is in and
/// 0 for the others. Written from the circuits there are at each scrape,
/// not kept as gauges (which the metrics facade cannot remove): a circuit
/// forgotten, its instance gone, leaves no series behind.
fn write_circuit_states(page: &mut String, circuits: &[(String, String, &str)]) {
    if circuits.is_empty() {
        return;
    }
    page.push_str("# HELP circuit_breaker_state 1 for the state each circuit is in, else 0.\n");
    page.push_str("# TYPE circuit_breaker_state gauge\n");
    for (upstream, instance, state) in circuits {
        let labels = format!(r#"upstream="{}",instance="{}""#, escape(upstream), escape(instance));
        for each in ["closed", "half_open", "open"] {
            let value = u8::from(each == *state);
            let _ = writeln!(page, r#"circuit_breaker_state{{{labels},state="{each}"}} {value}"#);
        }
    }
    page.push('\n');
}

fn write_instance_counts(page: &mut String, counts: &BTreeMap<(String, &'static str), u32>) {
    if counts.is_empty() {
        return;
    }
    page.push_str("# HELP registry_instances Instances registered, by service and health.\n");
    page.push_str("# TYPE registry_instances gauge\n");
    for ((service, status), count) in counts {
        let service = escape(service);
        let _ = writeln!(
            page,
            r#"registry_instances{{service_name="{service}",status="{status}"}} {count}"#
        );
    }
    page.push('\n');
}

/// A label's value as Prometheus's text format writes it.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
}
