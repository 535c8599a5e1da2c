//! `cargo run -p trace-viewer`: receives OTLP on 4318, shows each trace in
//! the terminal once it has settled, and every kept trace on 16686.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::web::Data;
use clap::Parser;
use trace_viewer::store::{MAX_SPANS, Store};
use trace_viewer::{listen, servers, waterfall};

/// Shows the workshop's traces without Jaeger: OTLP in, waterfalls out.
#[derive(Parser)]
#[command(version)]
struct Options {
    /// Port that receives OTLP over HTTP (protobuf), where steps 08-10 send their spans
    #[arg(long, env = "TRACE_VIEWER_OTLP_PORT", default_value_t = 4318)]
    otlp_port: u16,

    /// Port of the page that shows the traces (Jaeger's UI port)
    #[arg(long, env = "TRACE_VIEWER_UI_PORT", default_value_t = 16686)]
    ui_port: u16,

    /// How many traces to keep in memory (32 MiB of them at most); the oldest goes first
    #[arg(long, env = "TRACE_VIEWER_KEEP", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    keep: u16,

    /// A trace is printed once no span of it came for this long: each
    /// service sends its spans every 5s, in a batch of its own
    #[arg(long, env = "TRACE_VIEWER_QUIET", default_value = "6s", value_parser = humantime::parse_duration)]
    quiet: Duration,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let otlp_instead = concat!(
        "--otlp-port <N> (or TRACE_VIEWER_OTLP_PORT=<N>), and send the step's spans there: ",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<N>"
    );
    let listeners = listen("OTLP", options.otlp_port, otlp_instead).and_then(|otlp| {
        Ok((otlp, listen("page", options.ui_port, "--ui-port <N> (or TRACE_VIEWER_UI_PORT=<N>)")?))
    });
    let (otlp, page) = match listeners {
        Ok(listeners) => listeners,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let store = Data::new(Mutex::new(Store::new(options.keep.into())));
    actix_web::rt::System::new().block_on(async move {
        let (receiver, page_server) = match servers(otlp, page, store.clone()) {
            Ok(servers) => servers,
            Err(error) => {
                eprintln!("trace-viewer cannot start: {error}");
                return ExitCode::FAILURE;
            }
        };
        let (port, quiet) = (options.otlp_port, humantime::format_duration(options.quiet));
        println!("trace-viewer receiving OTLP/HTTP (protobuf) on http://127.0.0.1:{port}/v1/traces");
        println!(
            "trace-viewer listening on http://127.0.0.1:{}: the last {} traces, at most {MAX_SPANS} spans each",
            options.ui_port, options.keep
        );
        match port {
            4318 => println!("Steps 08-10 send their spans here already: run one in another terminal."),
            _ => println!(
                "Point a step here: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{port} cargo run -p step08-tracing"
            ),
        }
        println!("Each trace is printed here once no span of it came for {quiet}.");
        actix_web::rt::spawn(print_settled(store, options.quiet));
        // Both stop on Ctrl-C (actix-web's own signal handling).
        match futures_util::future::try_join(receiver, page_server).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("trace-viewer failed: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Prints each trace once it has settled, and again if late spans came.
async fn print_settled(store: Data<Mutex<Store>>, quiet: Duration) {
    let mut every = actix_web::rt::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        let settled = store.lock().expect("no panic while holding the store").settled(quiet);
        for trace in settled {
            println!("\n{}", waterfall::render(&trace));
        }
    }
}
