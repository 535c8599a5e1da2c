//! The learner's side of the class: after each check, its result goes to
//! the class with a deadline of a moment. A class that does not answer
//! (asleep, unreachable, not started) costs a check that moment and never
//! fails it: the result is kept and goes with the next check.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use actix_web::http::Method;

use super::joined::Joined;
use super::report::{self, Report};
use crate::course::{Course, Exercise, Step};
use crate::progress::Progress;
use crate::terminal::Style;

/// What the class may add to a check, at most, whatever the network does.
pub const CHECK_DEADLINE: Duration = Duration::from_millis(700);
/// Joining is the learner's whole command: it can wait for a slow wifi.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(5);
pub const LEAVE_DEADLINE: Duration = Duration::from_secs(2);
/// The longest answer read from a class: a problem's detail, no more.
const ANSWER_BYTES: usize = 16 * 1024;

/// How a request to the class went.
pub enum Sent {
    Taken,
    /// The class answered with an error: its status and what it said.
    Refused {
        status: u16,
        detail: String,
    },
    /// No answer in time, or none at all: why.
    Unanswered(String),
}

/// Sends what the class has not had yet, the checks that just ran among
/// it, and says in a line how it went. Called after every check.
pub fn report_checks(course: &Course, progress: &Progress, step: &Step, exercises: &[&Exercise]) {
    let Some(mut joined) = Joined::load(course) else {
        return;
    };
    let ran = exercises.iter().map(|exercise| (step.folder.clone(), exercise.name.clone()));
    joined.unsent.extend(ran);
    // Kept before it is sent: a Ctrl-C during the send loses nothing.
    let _ = joined.save(course);
    let unsent = joined.unsent.iter().map(|(step, exercise)| (step.as_str(), exercise.as_str()));
    let report = joined.report(course, progress, unsent);
    let said = match send(&joined, &report, CHECK_DEADLINE) {
        Sent::Taken => {
            joined.unsent.clear();
            format!("Sent to the class at {}.", joined.url)
        }
        Sent::Refused { status: 403, .. } => format!(
            "The class at {} refused the code it was joined with (403); the result is kept. \
             Ask for the code and join again: cargo workshop join {} --name \"{}\" --code <code>",
            joined.url, joined.url, joined.name
        ),
        Sent::Refused { status, detail } if status >= 500 => format!(
            "The class at {} could not take the result ({status}: {detail}); it is kept and \
             goes with your next check.",
            joined.url
        ),
        Sent::Refused { status, detail } => {
            // The class will not take these whatever the number of tries.
            joined.unsent.clear();
            format!("The class at {} did not take the result ({status}): {detail}", joined.url)
        }
        Sent::Unanswered(why) => format!(
            "The class at {} did not answer ({why}); the result is kept and goes with your \
             next check.",
            joined.url
        ),
    };
    let _ = joined.save(course);
    println!("{}", Style::Dim.paint(&said));
}

/// `PUT /api/learners/{seat}`: a report, joining or after a check.
pub fn send(joined: &Joined, report: &Report, deadline: Duration) -> Sent {
    let body = serde_json::to_vec(report).expect("a report is plain data");
    request(Method::PUT, joined, Some(body), deadline)
}

/// `DELETE /api/learners/{seat}`: the class forgets this learner.
pub fn leave(joined: &Joined, deadline: Duration) -> Sent {
    request(Method::DELETE, joined, None, deadline)
}

/// One request to the class, given up after `deadline` whatever happens.
///
/// It runs on a thread of its own with its own small runtime, and this
/// thread waits for it no longer than the deadline: a name that takes long
/// to resolve, or a network that swallows packets, cannot hold a check up.
fn request(method: Method, joined: &Joined, body: Option<Vec<u8>>, deadline: Duration) -> Sent {
    let url = format!("{}/api/learners/{}", joined.url, joined.seat);
    let code = joined.code.clone();
    let (answer, answered) = mpsc::channel();
    thread::spawn(move || {
        let sent = actix_web::rt::System::new().block_on(async move {
            let exchange = exchange(method, &url, &code, body, deadline);
            match actix_web::rt::time::timeout(deadline, exchange).await {
                Ok(sent) => sent,
                Err(_) => Sent::Unanswered(format!("no answer within {deadline:?}")),
            }
        });
        let _ = answer.send(sent);
    });
    let grace = Duration::from_millis(50);
    answered
        .recv_timeout(deadline + grace)
        .unwrap_or_else(|_| Sent::Unanswered(format!("no answer within {deadline:?}")))
}

async fn exchange(
    method: Method,
    url: &str,
    code: &str,
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Sent {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().timeout(deadline))
        .timeout(deadline)
        // The code goes to the class's address and nowhere else.
        .disable_redirects()
        .finish();
    let request = client.request(method, url).bearer_auth(code);
    let sending = match body {
        Some(body) => request.content_type("application/json").send_body(body),
        None => request.send(),
    };
    let mut response = match sending.await {
        Ok(response) => response,
        Err(error) => return Sent::Unanswered(error.to_string()),
    };
    let status = response.status();
    if status.is_success() {
        return Sent::Taken;
    }
    let text = response.body().limit(ANSWER_BYTES).await.unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason given").to_string());
    // Printed on the learner's terminal: no escape sequences, and a line.
    Sent::Refused { status: status.as_u16(), detail: report::tidy_hint(&detail) }
}
