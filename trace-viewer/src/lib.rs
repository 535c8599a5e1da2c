//! A trace viewer for the workshop, when Jaeger (Docker) is not at hand:
//! it receives the steps' spans over OTLP on 4318 (`otlp.rs`), keeps the
//! last traces (`store.rs`, `span.rs`), prints each as a waterfall in its
//! terminal (`waterfall.rs`), and shows them on a page on 16686, Jaeger's
//! ports, as Jaeger's screens do: a time line per trace (`timeline.rs`) and
//! a graph of who calls whom (`graph.rs`), on a page that updates itself
//! (`web.rs`).

pub mod graph;
pub mod otlp;
pub mod span;
pub mod store;
pub mod timeline;
pub mod waterfall;
pub mod web;

use std::io;
use std::net::TcpListener;
use std::sync::Mutex;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};

use store::Store;

/// The OTLP receiver and the page, on listeners already bound, sharing `store`.
/// On Ctrl-C they wait 1 s at most for the connections still open (a
/// step's exporter keeps one), not actix's 30 s: nothing is left to finish.
pub fn servers(
    otlp: TcpListener,
    page: TcpListener,
    store: actix_web::web::Data<Mutex<Store>>,
) -> io::Result<(Server, Server)> {
    let kept = store.clone();
    let receiver =
        HttpServer::new(move || App::new().app_data(kept.clone()).configure(otlp::routes))
            .workers(1)
            .shutdown_timeout(1)
            .listen(otlp)?
            .run();
    let page = HttpServer::new(move || App::new().app_data(store.clone()).configure(web::routes))
        .workers(1)
        .shutdown_timeout(1)
        .listen(page)?
        .run();
    Ok((receiver, page))
}

/// Binds one of the viewer's ports. A port in use here is most likely a
/// Jaeger still running (or another viewer), so the message says so.
pub fn listen(what: &str, port: u16, option: &str) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port)).map_err(|error| match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "trace-viewer cannot listen on 127.0.0.1:{port} ({what}): the port is already in use.\n\
             Is Jaeger, or another trace-viewer, still running? Stop it \
             (`docker stop jaeger`, or Ctrl-C in its terminal),\n\
             or give the viewer another port: {option}"
        ),
        _ => format!("trace-viewer cannot listen on 127.0.0.1:{port} ({what}): {error}"),
    })
}
