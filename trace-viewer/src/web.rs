//! The page on Jaeger's port, drawn like Jaeger's screens: who calls whom
//! as a graph (`graph.rs`), each trace kept as a time line of bars
//! (`timeline.rs`), newest first. Rendered on the server from a snapshot,
//! outside the store's lock, everything a sender wrote escaped, and bounded
//! in bytes. New traces appear by themselves: the page asks for its live
//! part every two seconds (`page.js`, a few lines, no framework).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};

use crate::store::{MAX_SPANS, Snapshot, Store};
use crate::{graph, timeline};

/// Bytes of the page: the traces that do not fit are counted, not shown.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/", web::get().to(page)).route("/live", web::get().to(live));
}

async fn page(store: web::Data<Mutex<Store>>) -> HttpResponse {
    let snapshot = store.lock().expect("no panic while holding the store").snapshot();
    let top = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Traces</title>\n\
         <style>\n{STYLE}</style>\n</head><body>\n"
    );
    let bottom = format!("<script>\n{SCRIPT}</script>\n</body></html>\n");
    let live = live_part(&snapshot, MAX_PAGE_BYTES - top.len() - bottom.len());
    html(top + &live + &bottom)
}

/// The page's live part, unless the page already has this version of it
/// (`?since=<version>`): then 204, nothing new.
async fn live(
    store: web::Data<Mutex<Store>>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let snapshot = store.lock().expect("no panic while holding the store").snapshot();
    let since = query.get("since").and_then(|since| since.parse::<u64>().ok());
    if since == Some(snapshot.version) {
        return HttpResponse::NoContent().insert_header(not_stored()).finish();
    }
    html(live_part(&snapshot, MAX_PAGE_BYTES))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(not_stored())
        .body(body)
}

/// The page changes with every trace: a browser must not keep a copy.
fn not_stored() -> CacheControl {
    CacheControl(vec![CacheDirective::NoStore])
}

/// What the viewer keeps, the graph and the traces, in at most `budget` bytes.
fn live_part(snapshot: &Snapshot, budget: usize) -> String {
    let colours = Colours::new(snapshot);
    let mut html = format!(
        "<main id=\"live\" data-version=\"{}\">\n<header><h1>Traces</h1><p>Keeps the last {} traces, \
         at most {MAX_SPANS} spans each: {} now. ",
        snapshot.version,
        snapshot.keep,
        snapshot.traces.len()
    );
    let dropped = snapshot.dropped.spans();
    let _ = write!(html, "<strong>{dropped} spans dropped</strong>");
    if snapshot.dropped != Default::default() {
        let _ = write!(html, " ({})", escape(&snapshot.dropped.to_string()));
    }
    if snapshot.refused > 0 {
        let _ = write!(html, "; {} spans refused (ids that are not ids)", snapshot.refused);
    }
    html.push_str(".</p><span class=\"updates\">new traces appear by themselves</span></header>\n");
    html.push_str("<section class=\"card graph\"><h2>Dependencies</h2>\n");
    html.push_str(&graph::render(&snapshot.dependencies(), &colours));
    html.push_str("</section>\n");
    let end = "</main>\n";
    for (shown, trace) in snapshot.traces.iter().enumerate() {
        let article = timeline::render(trace, &colours);
        if html.len() + article.len() + end.len() + 200 > budget {
            let _ = writeln!(
                html,
                "<p class=\"more\">… and {} older traces, not shown: the page stops at {} MiB.</p>",
                snapshot.traces.len() - shown,
                MAX_PAGE_BYTES >> 20
            );
            break;
        }
        html.push_str(&article);
    }
    if snapshot.traces.is_empty() {
        html.push_str(
            "<p class=\"card\">None yet: run a step (08 to 10) and make a request through its gateway.</p>\n",
        );
    }
    html + end
}

/// A colour per service, the same in the graph and on the bars. Red is
/// left out: it says that a span failed.
pub struct Colours<'a>(BTreeMap<&'a str, &'static str>);

const PALETTE: [&str; 9] = [
    "#2b6cb0", "#2f855a", "#6b46c1", "#0f7c8c", "#b7791f", "#4a5568", "#b83280", "#7b5e3b",
    "#434190",
];

impl<'a> Colours<'a> {
    /// The services of `snapshot` in name order, each the next colour.
    fn new(snapshot: &'a Snapshot) -> Colours<'a> {
        let spans = snapshot.traces.iter().flat_map(|trace| &trace.spans);
        let mut services: BTreeMap<&str, &str> =
            spans.map(|span| (span.service.as_str(), PALETTE[0])).collect();
        for (index, colour) in services.values_mut().enumerate() {
            *colour = PALETTE[index % PALETTE.len()];
        }
        Colours(services)
    }

    pub fn of(&self, service: &str) -> &'static str {
        self.0.get(service).copied().unwrap_or(PALETTE[0])
    }
}

/// What a sender wrote, as text and never as markup.
pub fn escape(text: &str) -> String {
    let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    text.replace('"', "&quot;").replace('\'', "&#39;")
}
