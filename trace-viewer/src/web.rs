//! The page on Jaeger's port: the traces kept, newest first, each as the
//! terminal's waterfall, and who calls whom. Rendered on the server, as
//! escaped text: nothing to build, no JavaScript. Rendered from a snapshot,
//! outside the store's lock, and bounded in bytes like the waterfalls.

use std::fmt::Write;
use std::sync::Mutex;

use actix_web::{HttpResponse, web};

use crate::store::{Dropped, MAX_SPANS, Store};
use crate::waterfall;

/// Bytes of the page: the traces that do not fit are counted, not shown.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Callers and callees listed under Dependencies.
const MAX_DEPENDENCIES: usize = 100;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/", web::get().to(page));
}

async fn page(store: web::Data<Mutex<Store>>) -> HttpResponse {
    let snapshot = store.lock().expect("no panic while holding the store").snapshot();
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Traces</title>\n\
         <style>body{font-family:sans-serif;margin:2em} pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style>\n\
         </head><body>\n<h1>Traces</h1>\n",
    );
    let _ = write!(
        html,
        "<p>The last {} traces received, newest first (at most {MAX_SPANS} spans each). Reload for new ones.",
        snapshot.keep
    );
    if snapshot.dropped != Dropped::default() {
        let _ = write!(html, " Not kept since the viewer started: {}.", snapshot.dropped);
    }
    if snapshot.refused > 0 {
        let _ = write!(html, " Refused (ids that are not ids): {} spans.", snapshot.refused);
    }
    html.push_str("</p>\n<h2>Dependencies</h2>\n<ul>\n");
    let dependencies = snapshot.dependencies();
    for ((caller, callee), calls) in dependencies.iter().take(MAX_DEPENDENCIES) {
        let times = if *calls == 1 { "call" } else { "calls" };
        let _ = writeln!(html, "<li>{} → {}: {calls} {times}</li>", escape(caller), escape(callee));
    }
    if dependencies.len() > MAX_DEPENDENCIES {
        let _ = writeln!(html, "<li>and {} more</li>", dependencies.len() - MAX_DEPENDENCIES);
    }
    html.push_str("</ul>\n<h2>Traces</h2>\n");
    let end = "</body></html>\n";
    for (shown, trace) in snapshot.traces.iter().enumerate() {
        let pre = format!(
            "<pre id=\"{}\">{}</pre>\n",
            escape(&trace.id),
            escape(&waterfall::render(trace))
        );
        if html.len() + pre.len() + end.len() + 200 > MAX_PAGE_BYTES {
            let left = snapshot.traces.len() - shown;
            let _ = writeln!(
                html,
                "<p>… and {left} older traces, not shown: the page stops at {} MiB.</p>",
                MAX_PAGE_BYTES >> 20
            );
            break;
        }
        html.push_str(&pre);
    }
    if snapshot.traces.is_empty() {
        html.push_str(
            "<p>None yet: run a step (08 to 10) and make a request through its gateway.</p>\n",
        );
    }
    html.push_str(end);
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html)
}

/// What a sender wrote, as text and never as markup.
fn escape(text: &str) -> String {
    let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    text.replace('"', "&quot;").replace('\'', "&#39;")
}
