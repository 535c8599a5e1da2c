//! The dashboard: one HTML page, as Consul's and Eureka's registries serve,
//! for a class to watch on the projector while instances come and go.
//!
//! A registry's state is invisible, and the lesson is in how it changes:
//! an instance appears, passes, goes silent, turns critical, disappears.
//! So the page shows one card per instance, grouped by service, and each
//! check's status as a word and a colour (a colour alone is lost on a
//! washed-out projector and on a colour-blind reader), in type large enough
//! for the back of the room. What a check said is folded: its first words
//! say why, and the rest is there for whoever opens it.
//!
//! It refreshes itself: a few lines of script fetch the cards again
//! (`/dashboard/instances`, the same HTML the page starts with) and keep
//! open what the reader opened. Without script, the page is whole, only
//! not refreshed. Everything a service sent is escaped, and what the page
//! shows is bounded: at most `MOST_INSTANCES` cards, each check's output
//! cut to `DASHBOARD_OUTPUT` bytes.

use actix_web::{HttpResponse, web};
use quick_xml::escape::escape;

use super::registration::cut;
use super::state::{Catalog, Instance, InstanceCheck, Registry, Status};

/// The page around the cards: its style and its script.
const PAGE: &str = include_str!("dashboard.html");

/// The most of its checks' output a card shows, in bytes, shared by its
/// checks in turn (so that a card stays small however many checks it has):
/// the start says what is wrong, and `/v1/health/service/<name>` has the rest.
const DASHBOARD_OUTPUT: usize = 1024;

/// The most of that shown while it is folded, in bytes.
const PREVIEW: usize = 80;

/// `GET /`: the page, with the cards as they are now.
pub(super) async fn page(registry: web::Data<Registry>) -> HttpResponse {
    let cards = registry.read(cards);
    html(PAGE.replacen("<!-- cards -->", &cards, 1))
}

/// `GET /dashboard/instances`: the cards alone, which the page fetches.
pub(super) async fn instances(registry: web::Data<Registry>) -> HttpResponse {
    html(registry.read(cards))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body)
}

/// Every instance, grouped by service, with a line that sums them up.
fn cards(catalog: &Catalog) -> String {
    let mut instances: Vec<&Instance> = catalog.instances.values().collect();
    instances.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let passing = instances.iter().filter(|instance| instance.status() == Status::Passing);
    let mut html = format!(
        "<p class=\"summary\">{} instances, {} passing <span>(index {})</span></p>\n",
        instances.len(),
        passing.count(),
        catalog.index
    );
    if instances.is_empty() {
        html += "<p>No service is registered.</p>\n";
    }
    for service in instances.chunk_by(|a, b| a.name == b.name) {
        html +=
            &format!("<section>\n<h2>{}</h2>\n<div class=\"cards\">\n", escape(&service[0].name));
        for instance in service {
            html += &card(instance);
        }
        html += "</div>\n</section>\n";
    }
    html
}

fn card(instance: &Instance) -> String {
    let mut output_left = DASHBOARD_OUTPUT;
    let checks: String = instance.checks.iter().map(|c| check(c, &mut output_left)).collect();
    format!(
        "<article class=\"{}\">\n<h3>{}</h3>\n<p class=\"address\">{}</p>\n{checks}</article>\n",
        instance.status().as_str(),
        escape(&instance.id),
        escape(instance.host_and_port()),
    )
}

/// A check: its status as a word on its colour, its name, when it last
/// learned anything, and what it said, folded.
fn check(check: &InstanceCheck, output_left: &mut usize) -> String {
    let status = check.status.as_str();
    let checked = match check.last_checked.and_then(|at| at.elapsed().ok()) {
        Some(ago) => format!("checked {} s ago", ago.as_secs()),
        None => "not checked yet".to_string(),
    };
    let output = match check.output.as_str() {
        "" => String::new(),
        output => {
            let shown = cut(output, *output_left);
            *output_left -= shown.len();
            let more = if shown.len() < output.len() { " …" } else { "" };
            let first_line = shown.lines().next().unwrap_or_default();
            format!(
                "<details data-check=\"{}\"><summary>output<span class=\"preview\">: {}</span>\
                 </summary><pre>{}{more}</pre></details>\n",
                escape(&check.id),
                escape(cut(first_line, PREVIEW)),
                escape(shown),
            )
        }
    };
    format!(
        "<div class=\"check {status}\">\n<p><span class=\"status\">{status}</span> {}</p>\n\
         <p class=\"when\">{} check, {checked}</p>\n{output}</div>\n",
        escape(&check.name),
        check.probe.kind().to_uppercase(),
    )
}
