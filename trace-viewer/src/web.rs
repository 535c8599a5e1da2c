//! The page on Jaeger's port: the traces kept, newest first, each as the
//! terminal's waterfall, and who calls whom. Rendered on the server, as
//! escaped text: nothing to build, no JavaScript.

use std::fmt::Write;
use std::sync::Mutex;

use actix_web::{HttpResponse, web};

use crate::store::{MAX_SPANS, Store};
use crate::waterfall;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/", web::get().to(page));
}

async fn page(store: web::Data<Mutex<Store>>) -> HttpResponse {
    let store = store.lock().expect("no panic while holding the store");
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Traces</title>\n\
         <style>body{font-family:sans-serif;margin:2em} pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style>\n\
         </head><body>\n<h1>Traces</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>The last {} traces received, newest first (at most {MAX_SPANS} spans each). Reload for new ones.</p>",
        store.keep()
    );
    html.push_str("<h2>Dependencies</h2>\n<ul>\n");
    for ((caller, callee), calls) in store.dependencies() {
        let times = if calls == 1 { "call" } else { "calls" };
        let _ =
            writeln!(html, "<li>{} → {}: {calls} {times}</li>", escape(&caller), escape(&callee));
    }
    html.push_str("</ul>\n<h2>Traces</h2>\n");
    let mut none = true;
    for trace in store.newest_first() {
        none = false;
        let _ = writeln!(
            html,
            "<pre id=\"{}\">{}</pre>",
            escape(&trace.id),
            escape(&waterfall::render(trace))
        );
    }
    if none {
        html.push_str(
            "<p>None yet: run a step (08 to 10) and make a request through its gateway.</p>\n",
        );
    }
    html.push_str("</body></html>\n");
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html)
}

/// What a sender wrote, as text and never as markup.
fn escape(text: &str) -> String {
    let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    text.replace('"', "&quot;").replace('\'', "&#39;")
}
