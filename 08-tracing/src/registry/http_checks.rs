//! HTTP checks: the registry calls each instance's health endpoint itself.
//!
//! A TTL check believes the instance: one that still sends its heartbeat
//! while it cannot serve looks healthy. An HTTP check asks what a client
//! would see: at every interval the registry calls the instance's
//! `/healthz` and reads the answer as Consul does, 2xx passing, 429
//! warning, anything else critical, and so are no answer and one too late.
//!
//! A registration that makes the registry call out is a risk of its own,
//! bounded here: a check calls only its instance, follows no redirect, runs
//! at most every 100 ms, 100 a second in all, and keeps of the answer a
//! health document or a line of text, never another page.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use serde_json::Value;

use super::registration::{LONGEST_OUTPUT, check_duration, cut, valid_name};
use super::state::{Catalog, InstanceCheck, Probe, Registry, SWEEP_EVERY, Status, later};

/// The most HTTP checks one sweep starts: 100 a second in all. The
/// workshop's instances need a few a second; however many checks are
/// registered, the registry calls no more than this, those that have
/// waited longest first, and each then runs less often than it asked.
const CHECKS_PER_SWEEP: usize = 25;

/// How long an HTTP check waits for an answer when the registration does
/// not say (Consul's default).
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest interval between two runs of an HTTP check: any shorter,
/// and the registry would call the instance in a loop.
const SHORTEST_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// An HTTP check: the registry calls `url` every `interval` and waits
/// `timeout` for the answer; the instance need not do anything but answer.
#[derive(Clone)]
pub(super) struct HttpProbe {
    url: String,
    interval: Duration,
    timeout: Duration,
    next_run: Instant,
    running: bool,
}

impl HttpProbe {
    /// The check a registration asks for, at the instance's `address` and
    /// `port`, within bounds.
    pub(super) fn new(
        url: &str,
        interval: &Option<Value>,
        timeout: &Option<Value>,
        (address, port): (&str, u16),
    ) -> Result<HttpProbe, String> {
        Ok(HttpProbe {
            url: calls_the_instance(url.to_string(), address, port)?,
            interval: check_duration("Interval", interval, SHORTEST_CHECK_INTERVAL)?
                .ok_or("Invalid check: Interval must be > 0 for HTTP checks")?,
            timeout: check_duration("Timeout", timeout, Duration::ZERO)?
                .unwrap_or(DEFAULT_CHECK_TIMEOUT),
            next_run: Instant::now(),
            running: false,
        })
    }

    /// Whether `other` asks for this very check (and may keep its schedule).
    pub(super) fn is_same_as(&self, other: &HttpProbe) -> bool {
        (&self.url, self.interval, self.timeout) == (&other.url, other.interval, other.timeout)
    }

    fn is_due(&self, now: Instant) -> bool {
        !self.running && now >= self.next_run
    }
}

/// A check calls its instance, at its Address and Port (none: this machine);
/// not, as Consul allows, any URL (another service's /metrics, another host).
fn calls_the_instance(url: String, address: &str, port: u16) -> Result<String, String> {
    valid_name("HTTP check URL", &url)?;
    let address = if address.is_empty() { "127.0.0.1" } else { address };
    let host = |text: &str| text.trim_start_matches('[').trim_end_matches(']').to_lowercase();
    let called = url.parse::<Uri>().ok().filter(|uri| uri.scheme_str() == Some("http"));
    match called.as_ref().and_then(Uri::authority) {
        Some(called)
            if host(called.host()) == host(address) && called.port_u16().unwrap_or(80) == port =>
        {
            Ok(url)
        }
        _ => Err(format!(
            "Invalid check: HTTP {url:?} must call the instance itself, at its Address and Port: \
             http://{}:{port}/…",
            if address.contains(':') { format!("[{address}]") } else { address.to_string() }
        )),
    }
}

/// An HTTP check due to run.
struct DueCheck {
    check_id: String,
    url: String,
    timeout: Duration,
}

impl Catalog {
    /// The HTTP checks due to run, no more than a sweep's share, those that
    /// have waited longest first; each is marked running until it answers.
    fn due_http_checks(&mut self, now: Instant) -> Vec<DueCheck> {
        let mut waiting: Vec<(&String, &mut HttpProbe)> = self
            .instances
            .values_mut()
            .flat_map(|instance| &mut instance.checks)
            .filter_map(|check| match check {
                InstanceCheck { id, probe: Probe::Http(http), .. } if http.is_due(now) => {
                    Some((&*id, http))
                }
                _ => None,
            })
            .collect();
        waiting.sort_by_key(|(_, http)| http.next_run);
        waiting.truncate(CHECKS_PER_SWEEP);
        let due = waiting.into_iter().map(|(check_id, http)| {
            http.running = true;
            http.next_run = later(now, http.interval);
            DueCheck { check_id: check_id.clone(), url: http.url.clone(), timeout: http.timeout }
        });
        due.collect()
    }

    /// The result of an HTTP check that the registry ran.
    fn checked(&mut self, check_id: &str, status: Status, output: String) {
        let Some(check) = self.check_mut(check_id) else { return }; // deregistered meanwhile
        if let Probe::Http(http) = &mut check.probe {
            http.running = false;
        }
        check.last_checked = Some(SystemTime::now());
        self.set_status(check_id, status, output);
    }
}

/// Starts the HTTP checks as they fall due, for as long as the registry runs.
pub(super) async fn keep_checking(registry: Arc<Registry>) {
    // Each check has its own timeout. A redirect is not followed: it would
    // let an instance send its check anywhere, past `calls_the_instance`.
    let client = awc::Client::builder().disable_timeout().disable_redirects().finish();
    let mut ticks = actix_web::rt::time::interval(SWEEP_EVERY);
    loop {
        ticks.tick().await;
        // A panic here would end the checks for good: skip this sweep
        // instead (and `/healthz` fails: the catalog is poisoned).
        let due = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|catalog| catalog.due_http_checks(Instant::now()))
        }));
        for due in due.unwrap_or_default() {
            actix_web::rt::spawn(run_http_check(registry.clone(), client.clone(), due));
        }
    }
}

/// Calls an instance's health endpoint; the output says what came back.
async fn run_http_check(registry: Arc<Registry>, client: awc::Client, due: DueCheck) {
    let call = async {
        let request = client
            .get(&due.url)
            .insert_header(("Accept", "text/plain, text/*, */*"))
            .insert_header(("User-Agent", "Consul Health Check"));
        let mut response = request.send().await.map_err(|error| error.to_string())?;
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response.body().limit(64 * 1024).await.unwrap_or_default();
        Ok::<_, String>((response.status(), shown_body(content_type, &body)))
    };
    let (status, output) = match actix_web::rt::time::timeout(due.timeout, call).await {
        Ok(Ok((code, body))) => {
            let status = match code {
                code if code.is_success() => Status::Passing,
                StatusCode::TOO_MANY_REQUESTS => Status::Warning,
                _ => Status::Critical,
            };
            (status, format!("HTTP GET {}: {code} Output: {body}", due.url))
        }
        Ok(Err(error)) => (Status::Critical, format!("HTTP GET {}: {error}", due.url)),
        Err(_) => {
            let timeout = humantime::format_duration(due.timeout);
            (Status::Critical, format!("HTTP GET {}: no answer within {timeout}", due.url))
        }
    };
    registry.write(|catalog| catalog.checked(&due.check_id, status, output));
}

/// What a check's output shows of the answer: a health document whole (up
/// to 4 KB), or the first line of plain text or of a body of no type ("OK").
/// Any other body is no health answer, and is not shown: it may be a page
/// that the instance serves its own clients, not the open dashboard.
fn shown_body(content_type: Option<HeaderValue>, body: &[u8]) -> String {
    const FIRST_LINE: usize = 200;
    let body = String::from_utf8_lossy(body);
    let content_type = content_type.as_ref().and_then(|value| value.to_str().ok()).unwrap_or("");
    match content_type.split(';').next().unwrap_or("").trim().to_lowercase().as_str() {
        "application/health+json" => cut(&body, LONGEST_OUTPUT).to_string(),
        "text/plain" | "" => cut(body.lines().next().unwrap_or(""), FIRST_LINE).to_string(),
        _ => "(not shown: not a health answer)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::registration::parse_registration;
    use super::*;

    #[test]
    fn a_sweep_starts_no_more_http_checks_than_its_share() {
        let mut catalog = Registry::new().catalog.into_inner().unwrap();
        for port in 1..=4 {
            let check =
                |n| json!({ "HTTP": format!("http://127.0.0.1:{port}/{n}"), "Interval": "1s" });
            let checks: Vec<Value> = (0..8).map(check).collect();
            let entry =
                json!({ "Name": "s", "ID": format!("s-{port}"), "Port": port, "Checks": checks });
            let new = parse_registration(entry.to_string().as_bytes()).unwrap();
            assert!(catalog.register(new).is_ok());
        }
        let now = Instant::now();
        let first = catalog.due_http_checks(now);
        // The 25 are running; the 7 left go at the next sweep.
        let second = catalog.due_http_checks(now);
        assert_eq!((first.len(), second.len()), (CHECKS_PER_SWEEP, 32 - CHECKS_PER_SWEEP));
        assert!(second.iter().all(|due| first.iter().all(|run| run.check_id != due.check_id)));
    }
}
