//! Health: the document every service answers at `/healthz`, the checks
//! behind it, and an override to make an instance unhealthy by hand.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::platform::Problem;

/// A service's health, in the words of the IETF draft "Health Check
/// Response Format for HTTP APIs": pass, warn (degraded, still serving) or
/// fail (take it out of rotation). Ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Pass,
    Warn,
    Fail,
}

impl Health {
    /// As Consul reads a health endpoint's status: 2xx passing, 429
    /// warning, anything else critical.
    fn status_code(self) -> StatusCode {
        match self {
            Health::Pass => StatusCode::OK,
            Health::Warn => StatusCode::TOO_MANY_REQUESTS,
            Health::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How long one health check may take: a hung dependency must not hang
/// the health endpoint, which would then look hung itself.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One check of a service's own health, usually of something it depends on
/// (not the registry's checks of instances, which are `registry.rs`'s):
/// its name in the health document (`service2:reachability`), how bad it
/// is when it fails (a dependency that is down makes a service degraded,
/// `Warn`, not dead), and the check itself, which says what it saw.
pub struct DependencyCheck<'a> {
    name: &'static str,
    when_failing: Health,
    run: futures_util::future::LocalBoxFuture<'a, Result<String, String>>,
}

impl<'a> DependencyCheck<'a> {
    pub fn new(
        name: &'static str,
        when_failing: Health,
        run: impl Future<Output = Result<String, String>> + 'a,
    ) -> Self {
        DependencyCheck { name, when_failing, run: Box::pin(run) }
    }
}

/// A health set by hand, with `PUT /healthz/override` (`fail` or `warn`),
/// until `DELETE /healthz/override`: a way to take an instance out of
/// rotation, for maintenance, or to see what the registry does about it.
#[derive(Default)]
pub struct HealthOverride(Mutex<Option<Health>>);

pub(crate) async fn set_health_override(
    overridden: web::Data<HealthOverride>,
    request: HttpRequest,
    body: String,
) -> HttpResponse {
    if let Err(problem) = from_this_machine(&request) {
        return problem.error_response();
    }
    let health = match body.trim() {
        "fail" => Health::Fail,
        "warn" => Health::Warn,
        other => {
            let detail =
                format!("send fail or warn (or DELETE to clear the override), not {other:?}");
            return Problem::new(StatusCode::BAD_REQUEST, detail).error_response();
        }
    };
    *overridden.0.lock().expect("health override") = Some(health);
    warn!("health set by hand to {}", body.trim());
    HttpResponse::NoContent().finish()
}

pub(crate) async fn clear_health_override(
    overridden: web::Data<HealthOverride>,
    request: HttpRequest,
) -> HttpResponse {
    if let Err(problem) = from_this_machine(&request) {
        return problem.error_response();
    }
    *overridden.0.lock().expect("health override") = None;
    info!("health override cleared");
    HttpResponse::NoContent().finish()
}

/// The override is for whoever runs the service, so it answers to this
/// machine only (a service may listen on 0.0.0.0).
fn from_this_machine(request: &HttpRequest) -> Result<(), Problem> {
    match request.peer_addr() {
        Some(peer) if peer.ip().is_loopback() => Ok(()),
        _ => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "the health override answers to this machine only",
        )),
    }
}

/// Runs `checks` at once, each within `HEALTH_CHECK_TIMEOUT`, and answers
/// the health document (`application/health+json`): the worst status of
/// all checks, 200 for pass, 429 for warn, 503 for fail.
pub async fn health_report(
    overridden: &HealthOverride,
    checks: Vec<DependencyCheck<'_>>,
) -> HttpResponse {
    let names: Vec<(&str, Health)> = checks.iter().map(|c| (c.name, c.when_failing)).collect();
    let results = futures_util::future::join_all(checks.into_iter().map(|check| async move {
        let started = Instant::now();
        let result = match actix_web::rt::time::timeout(HEALTH_CHECK_TIMEOUT, check.run).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(HEALTH_CHECK_TIMEOUT)
            )),
        };
        (result, started.elapsed())
    }))
    .await;

    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut status = Health::Pass;
    let mut details = serde_json::Map::new();
    for ((name, when_failing), (result, took)) in names.into_iter().zip(results) {
        let (check_status, output) = match result {
            Ok(output) => (Health::Pass, output),
            Err(output) => (when_failing, output),
        };
        status = status.max(check_status);
        let detail = json!([{
            "status": check_status,
            "observedValue": took.as_millis() as u64,
            "observedUnit": "ms",
            "time": now,
            "output": output,
        }]);
        details.insert(name.to_string(), detail);
    }
    if let Some(set_by_hand) = *overridden.0.lock().expect("health override") {
        status = status.max(set_by_hand);
        let output = "set by hand with PUT /healthz/override; DELETE it to clear";
        details.insert(
            "override".to_string(),
            json!([{ "status": set_by_hand, "time": now, "output": output }]),
        );
    }
    HttpResponse::build(status.status_code())
        .content_type("application/health+json")
        .json(json!({ "status": status, "checks": details }))
}
