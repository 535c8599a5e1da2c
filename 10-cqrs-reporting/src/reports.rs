//! reports: the read side of CQRS. It takes no commands. It follows the
//! event feeds of users and accounts and keeps, in its own database, a view
//! made for one question: a user's name and state with their balance, the
//! sum of their accounts. Nothing is joined when a report is read.
//!
//! The view is **eventually consistent**: a change reaches it a moment after
//! the write service committed it (the report says when it was last
//! updated; the health document says how far behind each feed it is).
//!
//! **Nothing lost, nothing twice.** For each feed the view keeps the `seq`
//! of the last event it applied, and applies a page of events *and* moves
//! that position in one transaction. Stopped or killed at any moment, it
//! resumes after the last event it committed: an event is never skipped,
//! and one applied is never applied again.
//!
//! `GET /<user_id>` reads a user's report, `GET /` lists them. Through the
//! gateway: `/api/reports/…`.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use metrics::gauge;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::events::{Event, Store, StoreOptions, storage_problem};
use crate::{Check, Discovery, Health, HealthOverride, Problem, RegistrationOptions, Upstream};

pub const NAME: &str = "reports";

/// The feeds the reports follow (the services that own the data), and the
/// name of each one's check in the health document.
const FEEDS: [(&str, &str); 2] = [("users", "feed:users"), ("accounts", "feed:accounts")];

/// The reports service's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "REPORTS_PORT", default_value_t = 3007)]
    pub port: u16,

    /// Most events asked of a feed at once, and applied in one transaction
    #[arg(long, env = "REPORTS_BATCH", default_value_t = 100)]
    pub batch: u32,

    /// For tests: a pause after each event applied, so that the service
    /// can be stopped in the middle of a batch
    #[arg(long, env = "REPORTS_APPLY_PAUSE", default_value = "0s", value_parser = humantime::parse_duration, hide = true)]
    pub apply_pause: Duration,

    #[command(flatten)]
    pub store: StoreOptions,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    user_id TEXT PRIMARY KEY,
    name TEXT,
    state TEXT,
    balance INTEGER NOT NULL DEFAULT 0,
    accounts INTEGER NOT NULL DEFAULT 0,
    events_applied INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS report_accounts (
    account_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    balance INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    feed TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);";

/// How far each feed has been followed: the last `seq` applied, the last
/// one the feed has, and what went wrong last time, if anything.
#[derive(Default)]
struct Progress(Mutex<HashMap<&'static str, FeedProgress>>);

#[derive(Clone, Default, Serialize)]
struct FeedProgress {
    applied: i64,
    last_seq: Option<i64>,
    problem: Option<String>,
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    // The reports' database has no event feed of its own, but the same
    // storage (an empty events table comes with it).
    let store = Store::open(&options.store, NAME, SCHEMA).map_err(io::Error::other)?;
    let progress = Arc::new(Progress::default());
    let registry_url = options.registration.registry_url.clone();
    for (feed, _) in FEEDS {
        let follower = Follower {
            feed,
            store: store.clone(),
            progress: progress.clone(),
            discovery: Discovery::new(registry_url.clone(), FEED_WAIT + Duration::from_secs(2)),
            batch: options.batch,
            apply_pause: options.apply_pause,
        };
        actix_web::rt::spawn(follower.follow());
    }
    let store = web::Data::new(store);
    let progress = web::Data::from(progress);
    crate::serve(listener, move |routes| {
        routes.app_data(store.clone()).app_data(progress.clone());
        routes.route("/healthz", web::get().to(healthz));
        // Queries only: a report is changed by events, never by a client.
        routes.service(web::resource("/").get(list).default_service(crate::not_allowed("GET")));
        let one = web::resource("/{user_id}").get(get);
        routes.service(one.default_service(crate::not_allowed("GET")));
        routes.default_service(web::to(crate::no_such_path));
    })
}

/// How long a request to a feed waits for new events (long polling).
const FEED_WAIT: Duration = Duration::from_secs(10);

/// Follows one feed, for as long as the service runs.
struct Follower {
    feed: &'static str,
    store: Arc<Store>,
    progress: Arc<Progress>,
    discovery: Discovery,
    batch: u32,
    apply_pause: Duration,
}

#[derive(Deserialize)]
struct Page {
    events: Vec<Event>,
    last_seq: i64,
}

impl Follower {
    async fn follow(self) {
        let client = crate::http_client();
        let feed = self.feed;
        let mut following = false;
        // What went wrong last time: said once, not at every retry.
        let mut trouble: Option<String> = None;
        loop {
            let read = self.store.read(move |db| position(db, feed)).await;
            let problem = match read {
                Err(problem) => problem.detail,
                Ok(applied) => {
                    // After a start or a failure, the first request does not
                    // wait: it says at once whether the feed answers.
                    let wait = if following { FEED_WAIT } else { Duration::ZERO };
                    match self.follow_once(&client, applied, wait, !following).await {
                        Ok(()) => {
                            (following, trouble) = (true, None);
                            continue;
                        }
                        Err(problem) => problem,
                    }
                }
            };
            if trouble.as_ref() != Some(&problem) {
                warn!("{problem} (retrying every second)");
            }
            (following, trouble) = (false, Some(problem));
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Asks the feed for the events after `applied` and applies them (with
    /// `announce`, says first that the feed answers); what went wrong, if
    /// anything, as the health document says it.
    async fn follow_once(
        &self,
        client: &awc::Client,
        applied: i64,
        wait: Duration,
        announce: bool,
    ) -> Result<(), String> {
        let feed = self.feed;
        let page = match self.next_page(client, applied, wait).await {
            Ok(page) => page,
            Err(problem) => {
                let problem = format!("cannot follow the {feed} feed: {}", problem.detail);
                self.progressed(applied, None, Some(problem.clone()));
                return Err(problem);
            }
        };
        if announce && page.last_seq >= applied {
            info!("following the {feed} feed, after event {applied}");
        }
        if page.last_seq < applied {
            // Fewer events than the reports have applied: the feed's database
            // was replaced. Following it would skip its next events.
            let problem = format!(
                "the {feed} feed ends at event {} but the reports have applied up to {applied}: \
                 was its database replaced? To rebuild the reports, stop them and delete their \
                 database (data/reports.sqlite*)",
                page.last_seq
            );
            self.progressed(applied, Some(page.last_seq), Some(problem.clone()));
            return Err(problem);
        }
        match self.apply(applied, page.events).await {
            Ok(applied) => {
                self.progressed(applied, Some(page.last_seq), None);
                Ok(())
            }
            Err(problem) => {
                let problem = format!(
                    "cannot apply the {feed} feed's events after {applied}: {}",
                    problem.detail
                );
                self.progressed(applied, Some(page.last_seq), Some(problem.clone()));
                Err(problem)
            }
        }
    }

    /// The next page of events after `applied`, waiting for one if need be.
    async fn next_page(
        &self,
        client: &awc::Client,
        applied: i64,
        wait: Duration,
    ) -> Result<Page, Problem> {
        let instance: Upstream = self.discovery.find(client, self.feed).await?;
        let path = format!("/events?after={applied}&limit={}&wait={}s", self.batch, wait.as_secs());
        let page = instance.get_json(client, &path).await?;
        serde_json::from_value(page).map_err(|error| {
            let detail =
                format!("the {} feed answered a page that is not one ({error})", self.feed);
            Problem::new(StatusCode::BAD_GATEWAY, detail)
        })
    }

    /// Applies `events` and moves the feed's position past them, in one
    /// transaction; returns the position. If it fails, nothing of it is kept.
    async fn apply(&self, applied: i64, events: Vec<Event>) -> Result<i64, Problem> {
        if events.is_empty() {
            return Ok(applied);
        }
        let (feed, pause, count) = (self.feed, self.apply_pause, events.len());
        let events_word = if count == 1 { "event" } else { "events" };
        info!("applying {count} {events_word} of the {feed} feed, after event {applied}");
        self.store
            .write(move |db| {
                let mut position = position(db, feed)?;
                for event in events {
                    // Already applied (a page asked for twice): nothing to do.
                    if event.seq <= position {
                        continue;
                    }
                    apply(db, &event).map_err(storage_problem)?;
                    position = event.seq;
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
                db.execute(
                    "INSERT INTO positions (feed, seq) VALUES (?1, ?2)
                     ON CONFLICT (feed) DO UPDATE SET seq = excluded.seq",
                    params![feed, position],
                )
                .map_err(storage_problem)?;
                Ok(position)
            })
            .await
    }

    fn progressed(&self, applied: i64, last_seq: Option<i64>, problem: Option<String>) {
        let mut progress = self.progress.0.lock().expect("progress");
        let feed = progress.entry(self.feed).or_default();
        feed.applied = applied;
        feed.last_seq = last_seq.or(feed.last_seq);
        feed.problem = problem;
        // For Prometheus: how far the view is, and how far behind.
        gauge!("reports_feed_position", "feed" => self.feed).set(applied as f64);
        if let Some(last_seq) = feed.last_seq {
            gauge!("reports_feed_lag_events", "feed" => self.feed)
                .set((last_seq - applied).max(0) as f64);
        }
    }
}

fn position(db: &Connection, feed: &str) -> Result<i64, Problem> {
    db.query_row("SELECT seq FROM positions WHERE feed = ?1", [feed], |row| row.get(0))
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(storage_problem)
}

/// One event, into the view. Events of a user and of their accounts come
/// from two feeds, in no order between them: a report can start from
/// either side.
fn apply(db: &Transaction, event: &Event) -> rusqlite::Result<()> {
    let data = &event.data;
    let text = |field: &str| data[field].as_str().unwrap_or_default().to_string();
    let user_id = text("user_id");
    match event.kind.as_str() {
        "user_created" | "user_changed" => {
            db.execute(
                "INSERT INTO reports (user_id, name, state, events_applied, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, state = excluded.state,
                     events_applied = events_applied + 1, updated_at = excluded.updated_at",
                params![text("id"), text("name"), text("state"), event.at],
            )?;
        }
        "account_opened" | "balance_changed" => {
            let balance = data["balance"].as_i64().unwrap_or_default();
            db.execute(
                "INSERT INTO report_accounts (account_id, user_id, balance) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance",
                params![text("id"), user_id, balance],
            )?;
            db.execute(
                "INSERT INTO reports (user_id, events_applied, updated_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET events_applied = events_applied + 1,
                     updated_at = excluded.updated_at",
                params![user_id, event.at],
            )?;
            db.execute(
                "UPDATE reports SET
                     balance = (SELECT SUM(balance) FROM report_accounts WHERE user_id = ?1),
                     accounts = (SELECT COUNT(*) FROM report_accounts WHERE user_id = ?1)
                 WHERE user_id = ?1",
                [&user_id],
            )?;
        }
        other => warn!("event {} of a kind the reports do not know: {other}", event.seq),
    }
    Ok(())
}

#[derive(Serialize)]
struct Report {
    user_id: String,
    /// None until the user's own events have arrived.
    name: Option<String>,
    state: Option<String>,
    balance: i64,
    accounts: i64,
    events_applied: i64,
    updated_at: String,
}

const REPORT_COLUMNS: &str = "user_id, name, state, balance, accounts, events_applied, updated_at";

fn report_from_row(row: &rusqlite::Row) -> rusqlite::Result<Report> {
    Ok(Report {
        user_id: row.get(0)?,
        name: row.get(1)?,
        state: row.get(2)?,
        balance: row.get(3)?,
        accounts: row.get(4)?,
        events_applied: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

/// `GET /<user_id>`: the user's report, or 404 (no event of theirs yet).
async fn get(
    store: web::Data<Arc<Store>>,
    user_id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let user_id = user_id.into_inner();
    let report = store
        .read(move |db| {
            let query = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE user_id = ?1");
            let report = db.query_row(&query, [&user_id], report_from_row).optional();
            report.map_err(storage_problem)?.ok_or_else(|| {
                let detail =
                    format!("no report for the user {user_id} (yet: reports lag a little)");
                Problem::new(StatusCode::NOT_FOUND, detail)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /`: the first hundred reports, by user, and how far each feed is.
async fn list(
    store: web::Data<Arc<Store>>,
    progress: web::Data<Progress>,
) -> Result<HttpResponse, Problem> {
    let reports = store
        .read(|db| {
            let query = format!("SELECT {REPORT_COLUMNS} FROM reports ORDER BY user_id LIMIT 100");
            let mut statement = db.prepare(&query).map_err(storage_problem)?;
            let reports = statement.query_map([], report_from_row).map_err(storage_problem)?;
            reports.collect::<rusqlite::Result<Vec<Report>>>().map_err(storage_problem)
        })
        .await?;
    let feeds = progress.0.lock().expect("progress").clone();
    Ok(HttpResponse::Ok().json(json!({ "reports": reports, "feeds": feeds })))
}

/// How far behind the reports are: per feed, a check that says so (warn
/// when a feed cannot be followed: the reports still answer, from older
/// data).
async fn healthz(
    overridden: web::Data<HealthOverride>,
    progress: web::Data<Progress>,
) -> HttpResponse {
    let now: HashMap<&str, FeedProgress> = progress.0.lock().expect("progress").clone();
    let checks = FEEDS
        .iter()
        .map(|(feed, check)| {
            let state = now.get(feed).cloned().unwrap_or_default();
            Check::new(check, Health::Warn, async move {
                match (state.problem, state.last_seq) {
                    (Some(problem), _) => {
                        Err(format!("{problem}; the reports have events up to {}", state.applied))
                    }
                    (None, Some(last)) => Ok(format!(
                        "applied events up to {} of {last}: {} behind",
                        state.applied,
                        (last - state.applied).max(0)
                    )),
                    (None, None) => Err("not followed yet".to_string()),
                }
            })
        })
        .collect();
    crate::health_report(&overridden, checks).await
}
