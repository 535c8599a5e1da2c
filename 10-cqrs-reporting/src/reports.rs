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
//! **One history per feed.** The position is also of an epoch: the id of the
//! feed's database. If users' database is replaced, its feed numbers new
//! events from 1 again: applied on top of the old ones, they would be
//! skipped up to the old position, silently. So a feed whose epoch changes
//! (or that goes back) is no longer followed, and the reports' health fails
//! until they are rebuilt from the feeds as they are now.
//!
//! `GET /<user_id>` reads a user's report, `GET /` lists them. Through the
//! gateway: `/api/reports/…`.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use metrics::gauge;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::json;
use tracing::{error, info, warn};

use crate::events::{Epoch, Event, Page, Store, StoreOptions, storage_problem};
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
-- A user's accounts, with their balances: summed at every account event.
CREATE INDEX IF NOT EXISTS report_accounts_by_user ON report_accounts (user_id, balance);
CREATE TABLE IF NOT EXISTS positions (
    feed TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    epoch TEXT
);";

/// A reports database made before feeds had epochs has none in its
/// positions: it adopts the first epoch it sees.
fn add_epochs_to_positions(db: &Connection) -> rusqlite::Result<()> {
    let has_epochs: bool = db.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('positions') WHERE name = 'epoch'",
        [],
        |row| row.get(0),
    )?;
    if !has_epochs {
        db.execute("ALTER TABLE positions ADD COLUMN epoch TEXT", [])?;
    }
    Ok(())
}

/// How far each feed has been followed: the last `seq` applied, the last
/// one the feed has, and what went wrong last time, if anything.
#[derive(Default)]
struct Progress(Mutex<HashMap<&'static str, FeedProgress>>);

#[derive(Clone, Default, Serialize)]
struct FeedProgress {
    applied: i64,
    last_seq: Option<i64>,
    problem: Option<String>,
    /// The feed is another history than the one applied: no longer followed.
    stopped: bool,
}

/// Why a feed could not be followed this time.
enum Trouble {
    /// Worth another try: the feed did not answer, an event could not be
    /// applied.
    Passing(String),
    /// The feed is not the history the reports applied: following it would
    /// apply the new one on top of the old.
    Replaced(String),
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    // The reports' database has no event feed of its own, but the same
    // storage (an empty events table comes with it).
    let store = Store::open(&options.store, NAME, SCHEMA).map_err(io::Error::other)?;
    store.upgrade(add_epochs_to_positions).map_err(io::Error::other)?;
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
            data_dir: options.store.data_dir.clone(),
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
    /// Where the reports' database is, for the advice on rebuilding it.
    data_dir: PathBuf,
}

/// Where the reports are in a feed: the last event applied, and the epoch
/// it was of (none in a database from before epochs).
#[derive(Default)]
struct Position {
    applied: i64,
    epoch: Option<Epoch>,
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
                Ok(position) => {
                    // After a start or a failure, the first request does not
                    // wait: it says at once whether the feed answers.
                    let wait = if following { FEED_WAIT } else { Duration::ZERO };
                    match self.follow_once(&client, position, wait, !following).await {
                        Ok(()) => {
                            (following, trouble) = (true, None);
                            continue;
                        }
                        Err(Trouble::Passing(problem)) => problem,
                        Err(Trouble::Replaced(problem)) => {
                            error!("{problem}");
                            return;
                        }
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

    /// Asks the feed for the events after those applied and applies them
    /// (with `announce`, says first that the feed answers); what went wrong,
    /// if anything, as the health document says it.
    async fn follow_once(
        &self,
        client: &awc::Client,
        position: Position,
        wait: Duration,
        announce: bool,
    ) -> Result<(), Trouble> {
        let (feed, applied) = (self.feed, position.applied);
        let page = match self.next_page(client, applied, wait).await {
            Ok(page) => page,
            Err(problem) => {
                let trouble =
                    Trouble::Passing(format!("cannot follow the {feed} feed: {}", problem.detail));
                self.progressed(applied, None, Some(&trouble));
                return Err(trouble);
            }
        };
        if let Some(problem) = self.replaced(&position, &page) {
            let trouble = Trouble::Replaced(problem);
            self.progressed(applied, Some(page.last_seq), Some(&trouble));
            return Err(trouble);
        }
        if announce {
            info!("following the {feed} feed, after event {applied}");
        }
        let last_seq = page.last_seq;
        match self.apply(position, page).await {
            Ok(applied) => {
                self.progressed(applied, Some(last_seq), None);
                Ok(())
            }
            Err(problem) => {
                let trouble = Trouble::Passing(format!(
                    "cannot apply the {feed} feed's events after {applied}: {}",
                    problem.detail
                ));
                self.progressed(applied, Some(last_seq), Some(&trouble));
                Err(trouble)
            }
        }
    }

    /// Why `page` is not of the history the reports applied, if it is not:
    /// another epoch (the feed's database was made anew), or fewer events
    /// than applied (it went back, to a backup say). Either way its next
    /// events are not the ones after the position.
    fn replaced(&self, position: &Position, page: &Page) -> Option<String> {
        let feed = self.feed;
        let what = match &position.epoch {
            // With nothing of the feed applied yet, there is nothing to mix.
            Some(epoch) if *epoch != page.epoch && position.applied > 0 => format!(
                "the {feed} feed is of epoch {} but the reports applied its events of epoch {epoch}",
                page.epoch
            ),
            _ if page.last_seq < position.applied => format!(
                "the {feed} feed ends at event {} but the reports have applied up to {}",
                page.last_seq, position.applied
            ),
            _ => return None,
        };
        let database = self.data_dir.join(format!("{NAME}.sqlite*"));
        Some(format!(
            "{what}: was its database replaced? The reports no longer follow it. To rebuild \
             them, stop them and delete their database ({})",
            database.display()
        ))
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

    /// Applies the page's events and moves the feed's position past them
    /// (with its epoch), in one transaction; returns the position. If it
    /// fails, nothing of it is kept.
    async fn apply(&self, from: Position, page: Page) -> Result<i64, Problem> {
        let Page { events, epoch, .. } = page;
        // An empty page changes nothing, unless its epoch is new here.
        if events.is_empty() && from.epoch.as_ref() == Some(&epoch) {
            return Ok(from.applied);
        }
        let (feed, pause, count) = (self.feed, self.apply_pause, events.len());
        if count > 0 {
            let events_word = if count == 1 { "event" } else { "events" };
            let applied = from.applied;
            info!("applying {count} {events_word} of the {feed} feed, after event {applied}");
        }
        self.store
            .write(move |db| {
                let mut position = position(db, feed)?.applied;
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
                db.prepare_cached(MOVE_POSITION)
                    .and_then(|mut moving| moving.execute(params![feed, position, epoch]))
                    .map_err(storage_problem)?;
                Ok(position)
            })
            .await
    }

    /// Records how far the feed is, and its trouble if any.
    fn progressed(&self, applied: i64, last_seq: Option<i64>, trouble: Option<&Trouble>) {
        let mut progress = self.progress.0.lock().expect("progress");
        let feed = progress.entry(self.feed).or_default();
        feed.applied = applied;
        feed.last_seq = last_seq.or(feed.last_seq);
        feed.stopped = matches!(trouble, Some(Trouble::Replaced(_)));
        feed.problem = match trouble {
            Some(Trouble::Passing(problem) | Trouble::Replaced(problem)) => Some(problem.clone()),
            None => None,
        };
        // For Prometheus: how far the view is, and how far behind.
        gauge!("reports_feed_position", "feed" => self.feed).set(applied as f64);
        if let Some(last_seq) = feed.last_seq {
            gauge!("reports_feed_lag_events", "feed" => self.feed)
                .set((last_seq - applied).max(0) as f64);
        }
    }
}

fn position(db: &Connection, feed: &str) -> Result<Position, Problem> {
    let mut reading = db.prepare_cached(POSITION).map_err(storage_problem)?;
    reading
        .query_row([feed], |row| Ok(Position { applied: row.get(0)?, epoch: row.get(1)? }))
        .optional()
        .map(Option::unwrap_or_default)
        .map_err(storage_problem)
}

// The statements that follow a feed, run for every page or event. Each
// finds its rows by an index (a test checks), so that applying an event
// does not slow down as the tables grow.
const POSITION: &str = "SELECT seq, epoch FROM positions WHERE feed = ?1";
const MOVE_POSITION: &str = "INSERT INTO positions (feed, seq, epoch) VALUES (?1, ?2, ?3)
    ON CONFLICT (feed) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch";
const SET_USER: &str = "INSERT INTO reports (user_id, name, state, events_applied, updated_at)
    VALUES (?1, ?2, ?3, 1, ?4)
    ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, state = excluded.state,
        events_applied = events_applied + 1, updated_at = excluded.updated_at";
const SET_ACCOUNT: &str = "INSERT INTO report_accounts (account_id, user_id, balance)
    VALUES (?1, ?2, ?3)
    ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance";
const COUNT_ACCOUNT_EVENT: &str = "INSERT INTO reports (user_id, events_applied, updated_at)
    VALUES (?1, 1, ?2)
    ON CONFLICT (user_id) DO UPDATE SET events_applied = events_applied + 1,
        updated_at = excluded.updated_at";
const SUM_ACCOUNTS: &str = "UPDATE reports SET (balance, accounts) =
        (SELECT SUM(balance), COUNT(*) FROM report_accounts WHERE user_id = ?1)
    WHERE user_id = ?1";

/// One event, into the view. Events of a user and of their accounts come
/// from two feeds, in no order between them: a report can start from
/// either side.
fn apply(db: &Transaction, event: &Event) -> rusqlite::Result<()> {
    let data = &event.data;
    let text = |field: &str| data[field].as_str().unwrap_or_default().to_string();
    let user_id = text("user_id");
    match event.kind.as_str() {
        "user_created" | "user_changed" => {
            let user = params![text("id"), text("name"), text("state"), event.at];
            db.prepare_cached(SET_USER)?.execute(user)?;
        }
        "account_opened" | "balance_changed" => {
            let balance = data["balance"].as_i64().unwrap_or_default();
            db.prepare_cached(SET_ACCOUNT)?.execute(params![text("id"), user_id, balance])?;
            db.prepare_cached(COUNT_ACCOUNT_EVENT)?.execute(params![user_id, event.at])?;
            db.prepare_cached(SUM_ACCOUNTS)?.execute([&user_id])?;
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

/// How far behind the reports are: per feed, a check that says so. Warn
/// when a feed cannot be followed for now: the reports still answer, from
/// older data. Fail when a feed was replaced: they will not catch up
/// without a rebuild.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    progress: web::Data<Progress>,
) -> HttpResponse {
    let now: HashMap<&str, FeedProgress> = progress.0.lock().expect("progress").clone();
    let checks = FEEDS
        .iter()
        .map(|(feed, check)| {
            let state = now.get(feed).cloned().unwrap_or_default();
            let when_failing = if state.stopped { Health::Fail } else { Health::Warn };
            Check::new(check, when_failing, async move {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading a whole table for each event makes the reports fall further
    /// behind the more data there is: every statement of the apply path
    /// must search an index instead (SQLite's plan says SCAN otherwise).
    #[test]
    fn every_statement_that_applies_events_uses_an_index() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        let applying =
            [POSITION, MOVE_POSITION, SET_USER, SET_ACCOUNT, COUNT_ACCOUNT_EVENT, SUM_ACCOUNTS];
        for statement in applying {
            let mut explain = db.prepare(&format!("EXPLAIN QUERY PLAN {statement}")).unwrap();
            let mut rows = explain.raw_query();
            while let Some(row) = rows.next().unwrap() {
                let step: String = row.get("detail").unwrap();
                assert!(!step.starts_with("SCAN"), "{step}, in: {statement}");
            }
        }
    }
}
