//! `cargo workshop traffic`: steady traffic through the running step's
//! gateway, and beside it what the step knows, every second: the answers
//! by status and how long they took, each instance's check (the registry),
//! each circuit (`/breakers`), how far the reports are behind their feeds.
//! A pattern that a learner otherwise reads about in logs happens on the
//! screen: kill an instance, and watch.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::course::Course;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::terminal;
use crate::traffic::http::Address;
use crate::traffic::lines;
use crate::traffic::load::{Load, Route};
use crate::traffic::step::{Known, NotReady, Watcher};
use crate::traffic::tally::{Second, Tally, Totals};
use crate::traffic::view::Screen;

const AFTER_HELP: &str = "\
Without --path, the step's own routes: /api/service1/ and /api/service2/ (steps 05-09; \
/service1/ and /service2/ in 03-04); in step 10, reads of a report and writes to the \
user `traffic` and its account, created on the first run.

Bounded, so that it is never what overloads a step: at most 10000 requests a second \
(--rate) from at most 64 connections (--clients); a client whose answer is slow does \
not catch up in a burst. A request without an answer in 5 s counts as a timeout.

The live view needs a terminal; --plain and --json write one line a second anywhere.";

#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Requests a second (at most 10000)
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Connections sending at once (at most 64)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    clients: u32,
    /// Stop after this long ("30s", "2m"); without it, Ctrl-C stops
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    run_for: Option<Duration>,
    /// A path to call (give it again for more, called in turn); the step's own routes without it
    #[arg(long = "path")]
    paths: Vec<String>,
    /// One line a second, for logs, the README's walk-through or a screen reader
    #[arg(long, conflicts_with = "json")]
    plain: bool,
    /// One JSON object a second, for tests and scripts
    #[arg(long)]
    json: bool,
    /// Where the step's gateway answers
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:3001")]
    url: String,
    /// The key the gateway expects, sent as "Authorization: Bearer <key>"
    #[arg(long, env = "GATEWAY_API_KEY", default_value = "workshop-key", hide_env_values = true)]
    key: String,
    /// Where the step's registry answers (steps 04-10), for its instances and their checks
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:8500")]
    registry_url: String,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let gateway = Address::parse(&args.url).map_err(Error::new)?;
    let registry = Address::parse(&args.registry_url).map_err(Error::new)?;
    if let Some(path) = args.paths.iter().find(|path| !path.starts_with('/')) {
        return Err(Error::new(format!(
            "--path {path}: a path starts with /, like /api/service2/"
        )));
    }
    let seconds = match args.run_for {
        Some(run_for) if run_for.is_zero() => {
            return Err(Error::new("--for: give a duration, like 10s"));
        }
        run_for => run_for.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
    };
    let mut watcher = Watcher::new(gateway.clone(), registry.clone(), &args.key);
    let given = args.paths.iter().map(|path| Route::get(path)).collect();
    let routes = watcher.find(given).map_err(|not_ready| match not_ready {
        NotReady::NothingAnswers => nothing_answers(course, &gateway),
        NotReady::Said(why) => Error::new(why),
    })?;

    let mut output = match (args.json, args.plain || !terminal::is_interactive()) {
        (true, _) => Output::Json,
        (false, true) => Output::Plain,
        (false, false) => Output::Screen(Screen::new(title(&gateway, &args), args.rate)),
    };
    output.header(&describe(&gateway, &routes, &args, seconds));
    let started = Instant::now();
    let tally = Arc::new(Tally::new(started));
    let known = watcher.watch(started);
    let load = Load { gateway, key: args.key, routes, rate: args.rate, clients: args.clients };
    let routes: Vec<String> = load.routes.iter().map(Route::label).collect();
    let running = load.start(tally.clone());

    let interrupted = ctrl_c();
    let mut totals = Totals::default();
    for at in 1.. {
        let tick = started + Duration::from_secs(at);
        let stopped = match interrupted.recv_timeout(tick.saturating_duration_since(Instant::now()))
        {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                thread::sleep(tick.saturating_duration_since(Instant::now()));
                false
            }
        };
        let (mut second, runs) = tally.take();
        totals.add(&second, runs);
        if stopped {
            break; // a part of a second: in the summary, not shown alone
        }
        let now = known.lock().expect("known").clone();
        if output.second(at, &mut second, &now, &routes).is_err() || seconds == Some(at) {
            break;
        }
    }
    drop(running);
    output.end(&totals, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

/// The one line for a step that is not running: where, and how to start one.
fn nothing_answers(course: &Course, gateway: &Address) -> Error {
    let progress = Progress::load(course);
    let on = progress.next(course).map(|(step, _)| step).filter(|step| step.number >= 3);
    let step = on.or_else(|| course.steps.iter().find(|step| step.number == 5));
    let start =
        step.map_or("cargo run -p <step>".to_string(), |s| format!("cargo run -p {}", s.package()));
    Error::new(format!(
        "nothing answers at {} (port {}): is the step running? Start it in another terminal \
         (`{start}`), then run this again",
        gateway.url,
        gateway.port()
    ))
}

fn title(gateway: &Address, args: &Args) -> String {
    format!(
        "traffic to {}  {}/s from {} clients  Ctrl-C ends",
        gateway.url, args.rate, args.clients
    )
}

/// What the run does, said once at the start.
fn describe(gateway: &Address, routes: &[Route], args: &Args, seconds: Option<u64>) -> String {
    let listed: Vec<String> = routes.iter().map(Route::label).collect();
    let until = seconds.map_or("until Ctrl-C".to_string(), |s| format!("for {s} s"));
    format!(
        "traffic to {}: {}, {} a second from {} clients, {until}",
        gateway.url,
        listed.join(", "),
        args.rate,
        args.clients
    )
}

/// Where the seconds go: the live screen, a line each, or an object each.
enum Output {
    Screen(Screen),
    Plain,
    Json,
}

impl Output {
    fn header(&self, description: &str) {
        match self {
            Output::Screen(_) => {}
            Output::Plain => println!("{description}"),
            Output::Json => eprintln!("{description}"),
        }
    }

    fn second(
        &mut self,
        at: u64,
        second: &mut Second,
        known: &Known,
        routes: &[String],
    ) -> io::Result<()> {
        let line = match self {
            Output::Screen(screen) => {
                screen.draw(at, second, known, routes);
                return Ok(());
            }
            Output::Plain => lines::plain(at, second, known),
            Output::Json => lines::json(at, second, known, routes).to_string(),
        };
        writeln!(io::stdout().lock(), "{line}")
    }

    fn end(&self, totals: &Totals, lasted: Duration) {
        let text = match self {
            Output::Json => lines::summary_json(totals, lasted).to_string(),
            Output::Screen(screen) => {
                screen.close();
                format!("\n{}", lines::summary(totals, lasted).join("\n"))
            }
            Output::Plain => lines::summary(totals, lasted).join("\n"),
        };
        let _ = writeln!(io::stdout().lock(), "{text}");
    }
}

/// Ctrl-C, as a message: the summary is printed before the end. Where it
/// cannot be caught, the channel closes and the run goes on until --for.
fn ctrl_c() -> mpsc::Receiver<()> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(runtime) = runtime
            && runtime.block_on(tokio::signal::ctrl_c()).is_ok()
        {
            let _ = sender.send(());
        }
    });
    receiver
}
