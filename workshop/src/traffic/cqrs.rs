//! Step 10's traffic: writes and reads of one user of its own, `traffic`,
//! so that the feeds grow and the reports have something to catch up
//! with. Writes change that user and its account again and again, never
//! adding users: what the traffic leaves behind is one user, one account,
//! and their events.

use std::thread;
use std::time::{Duration, Instant};

use super::http::{Answer, Request};
use super::load::{Route, problem_detail};

const USER: &str = r#"{"id": "traffic", "name": "Traffic"}"#;
const ACCOUNT: &str = r#"{"id": "traffic-main", "user_id": "traffic", "balance": 0}"#;
/// How long the services may take to take the writes, and the reports to
/// show the user, before the traffic starts anyway (its first reads 404s).
const READY_WITHIN: Duration = Duration::from_secs(10);
const AGAIN_AFTER: Duration = Duration::from_millis(200);

pub fn routes() -> Vec<Route> {
    let patch =
        |path: &str, body| Route { method: "PATCH", path: path.to_string(), body: Some(body) };
    vec![
        Route::get("/api/reports/traffic"),
        patch("/api/accounts/traffic-main", |n| format!(r#"{{"balance": {}}}"#, n % 1_000_000)),
        Route::get("/api/reports/traffic"),
        patch("/api/users/traffic", |n| format!(r#"{{"name": "Traffic {}"}}"#, n % 1_000_000)),
    ]
}

/// Creates the user and its account (a create sent again is answered 200;
/// one renamed by an earlier run, 409: either way it is there), then waits
/// a little for its report. A service just started is not in the registry's
/// rotation until its first check passes (503 until then): asked again.
pub fn prepare(
    key: &str,
    call: &mut dyn FnMut(&Request) -> Result<Answer, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    for (path, body) in [("/api/users/", USER), ("/api/accounts/", ACCOUNT)] {
        let request = Request { method: "POST", path, key: Some(key), body: Some(body) };
        loop {
            let answer = call(&request)?;
            match answer.status {
                200 | 201 | 409 => break,
                502 | 503 if Instant::now() < deadline => thread::sleep(AGAIN_AFTER),
                status => {
                    let detail = problem_detail(&answer.body).unwrap_or_default();
                    return Err(format!(
                        "POST {path} {body} answered {status}: {detail}; the traffic needs that record"
                    ));
                }
            }
        }
    }
    let read = Request { key: Some(key), ..Request::get("/api/reports/traffic") };
    while Instant::now() < deadline && !call(&read).is_ok_and(|answer| answer.status == 200) {
        thread::sleep(AGAIN_AFTER);
    }
    Ok(())
}
