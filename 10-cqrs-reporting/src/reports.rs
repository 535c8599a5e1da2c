//! reports: the read side of CQRS. It takes no commands. It follows the
//! event feeds of users and accounts and keeps, in its own database, a view
//! made for one question: a user's name and state with their balance, the
//! sum of their accounts. Nothing is joined when a report is read.
//!
//! The view is **eventually consistent**: a change reaches it a moment after
//! the write service committed it; the health document says how far behind
//! each feed it is.
//!
//! **Nothing lost, nothing twice.** For each feed the view keeps the `seq`
//! of the last event it applied, and applies a page of events *and* moves
//! that position in one transaction. Stopped or killed at any moment, it
//! resumes after the last event it committed.
//!
//! **One history per feed.** The position is also of an epoch. A feed whose
//! database was replaced numbers new events from 1 again: applied on top of
//! the old ones, they would be skipped up to the old position, silently. So
//! such a feed is no longer followed, and the health fails until the
//! reports are rebuilt.
//!
//! `GET /<user_id>` reads a user's report, `GET /` lists them. Through the
//! gateway: `/api/reports/…`.

use std::collections::BTreeMap;
use std::io;
use std::marker::PhantomData;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use metrics::gauge;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::accounts::AccountEvent;
use crate::events::{Event, Id, Name, Page};
use crate::platform::{self, Problem};
use crate::store::{self, Store, StoreOptions, storage_problem};
use crate::users::{UserEvent, UserState};
use crate::{DependencyCheck, Discovery, Health, HealthOverride, RegistrationOptions};

pub const NAME: &str = "reports";

/// The reports service's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "REPORTS_PORT", default_value_t = 3007)]
    pub port: u16,

    /// Most events asked of a feed at once, and applied in one transaction
    #[arg(long, env = "REPORTS_BATCH", default_value_t = 100)]
    pub batch: u32,

    /// For tests: a pause after each event applied, to stop the service
    /// in the middle of a batch
    #[arg(long, env = "REPORTS_APPLY_PAUSE", default_value = "0s", value_parser = humantime::parse_duration, hide = true)]
    pub apply_pause: Duration,

    #[command(flatten)]
    pub store: StoreOptions,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

/// A user's report, kept whole, one record per user.
#[derive(Serialize, Deserialize)]
struct Report {
    user_id: Id,
    /// None until the user's own events have arrived.
    name: Option<Name>,
    state: Option<UserState>,
    balance: i64,
    /// Each of the user's accounts, with its balance.
    accounts: BTreeMap<Id, i64>,
    events_applied: i64,
}

/// A feed the reports follow: the type of its events, and what each does
/// to a report. The events of a user and of their accounts come from two
/// feeds, in no order between them: a report can start from either side.
trait Feed: DeserializeOwned + Send + 'static {
    const SERVICE: &'static str;
    fn apply(self, db: &Transaction) -> Result<(), Problem>;
}

impl Feed for UserEvent {
    const SERVICE: &'static str = crate::users::NAME;
    fn apply(self, db: &Transaction) -> Result<(), Problem> {
        let (UserEvent::UserCreated(user) | UserEvent::UserChanged(user)) = self;
        update(db, &user.id, |report| {
            (report.name, report.state) = (Some(user.name), Some(user.state))
        })
    }
}

impl Feed for AccountEvent {
    const SERVICE: &'static str = crate::accounts::NAME;
    fn apply(self, db: &Transaction) -> Result<(), Problem> {
        let (AccountEvent::AccountOpened(account) | AccountEvent::BalanceChanged(account)) = self;
        update(db, &account.user_id, |report| {
            report.accounts.insert(account.id, account.balance.0);
            report.balance = report.accounts.values().sum();
        })
    }
}

fn update(db: &Connection, user_id: &Id, change: impl FnOnce(&mut Report)) -> Result<(), Problem> {
    let id = user_id.to_string();
    let mut report = store::get(db, &id)?.unwrap_or_else(|| Report {
        user_id: user_id.clone(),
        name: None,
        state: None,
        balance: 0,
        accounts: BTreeMap::new(),
        events_applied: 0,
    });
    change(&mut report);
    report.events_applied += 1;
    store::put(db, &id, &report)
}

/// Where the reports are in each feed: the last event applied, and its epoch.
const POSITIONS: &str = "CREATE TABLE IF NOT EXISTS positions (feed TEXT PRIMARY KEY, seq INTEGER NOT NULL, epoch TEXT NOT NULL);";

fn position(db: &Connection, feed: &str) -> Result<(i64, String), Problem> {
    let sql = "SELECT seq, epoch FROM positions WHERE feed = ?1";
    let found = db.query_row(sql, [feed], |row| Ok((row.get(0)?, row.get(1)?))).optional();
    Ok(found.map_err(storage_problem)?.unwrap_or_default())
}

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let store = Store::open(&options.store, NAME, POSITIONS)?;
    let progress = Arc::new(Progress::default());
    actix_web::rt::spawn(Follower::<UserEvent>::new(&options, &store, &progress).follow());
    actix_web::rt::spawn(Follower::<AccountEvent>::new(&options, &store, &progress).follow());
    let (store, progress) = (web::Data::new(store), web::Data::from(progress));
    platform::serve(listener, move |routes| {
        routes.app_data(store.clone()).app_data(progress.clone());
        routes.route("/healthz", web::get().to(healthz));
        // Queries only: a report is changed by events, never by a client.
        routes.service(web::resource("/").get(list).default_service(platform::not_allowed("GET")));
        let one = web::resource("/{user_id}").get(get);
        routes.service(one.default_service(platform::not_allowed("GET")));
        routes.default_service(web::to(platform::no_such_path));
    })
}

/// How far each feed has been followed, and what went wrong last, if anything.
#[derive(Default)]
struct Progress(Mutex<BTreeMap<&'static str, FeedProgress>>);

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
    /// Worth another try: the feed did not answer, an event could not be applied.
    Transient(String),
    /// The feed is not the history the reports applied.
    Replaced(String),
}

/// How long a request to a feed waits for new events (long polling).
const FEED_WAIT: Duration = Duration::from_secs(10);

/// Follows the feed of `E`'s service, for as long as the service runs.
struct Follower<E> {
    store: Arc<Store>,
    progress: Arc<Progress>,
    discovery: Discovery,
    batch: u32,
    apply_pause: Duration,
    feed: PhantomData<E>,
}

impl<E: Feed> Follower<E> {
    fn new(options: &Options, store: &Arc<Store>, progress: &Arc<Progress>) -> Self {
        let registry_url = options.registration.registry_url.clone();
        Follower {
            store: store.clone(),
            progress: progress.clone(),
            discovery: Discovery::new(registry_url, FEED_WAIT + Duration::from_secs(2)),
            batch: options.batch,
            apply_pause: options.apply_pause,
            feed: PhantomData,
        }
    }

    async fn follow(self) {
        let client = crate::http_client();
        // After a start or a failure, the first request does not wait: it
        // says at once whether the feed answers.
        let mut wait = Duration::ZERO;
        let mut said = None; // what went wrong last time: said once, not at every retry
        loop {
            match self.follow_once(&client, wait).await {
                Ok(()) => (wait, said) = (FEED_WAIT, None),
                Err(Trouble::Replaced(problem)) => return error!("{problem}"),
                Err(Trouble::Transient(problem)) => {
                    if said.as_ref() != Some(&problem) {
                        warn!("{problem} (retrying every second)");
                    }
                    (wait, said) = (Duration::ZERO, Some(problem));
                    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Asks the feed for the events after those applied, and applies them.
    async fn follow_once(&self, client: &awc::Client, wait: Duration) -> Result<(), Trouble> {
        let feed = E::SERVICE;
        let read = self.store.read(move |db| position(db, feed)).await;
        let (applied, epoch) = read.map_err(|problem| Trouble::Transient(problem.detail))?;
        let (outcome, last_seq) = match self.next_page(client, applied, wait).await {
            Err(problem) => {
                let problem = format!("cannot follow the {feed} feed: {}", problem.detail);
                (Err((applied, Trouble::Transient(problem))), None)
            }
            Ok(page) if applied > 0 && (page.epoch != epoch || page.last_seq < applied) => {
                let database = self.store.path.display();
                let problem = format!(
                    "the {feed} feed (epoch {}, events up to {}) is not the one the reports applied \
                     (epoch {epoch}, up to {applied}): was its database replaced? The reports no \
                     longer follow it. To rebuild them, stop them and delete their database ({database}*)",
                    page.epoch, page.last_seq
                );
                (Err((applied, Trouble::Replaced(problem))), Some(page.last_seq))
            }
            Ok(page) => {
                // Not waiting: the first page after a start or a failure.
                if wait.is_zero() {
                    info!("following the {feed} feed, after event {applied}");
                }
                let last_seq = page.last_seq;
                (self.apply(applied, page).await, Some(last_seq))
            }
        };
        let (now, trouble) = match outcome {
            Ok(now) => (now, None),
            Err((now, trouble)) => (now, Some(trouble)),
        };
        self.progressed(now, last_seq, trouble.as_ref());
        trouble.map_or(Ok(()), Err)
    }

    async fn next_page(
        &self,
        client: &awc::Client,
        applied: i64,
        wait: Duration,
    ) -> Result<Page<Value>, Problem> {
        let instance = self.discovery.find(client, E::SERVICE).await?;
        let path = format!("/events?after={applied}&limit={}&wait={}s", self.batch, wait.as_secs());
        let page = instance.get_json(client, &path).await?;
        serde_json::from_value(page).map_err(|error| {
            let detail =
                format!("the {} feed answered a page that is not one ({error})", E::SERVICE);
            Problem::new(StatusCode::BAD_GATEWAY, detail)
        })
    }

    /// Applies the page's events and moves the feed's position past them,
    /// in one transaction: all of it is kept, or none. Returns the position
    /// (with the trouble, if it stopped at an event it cannot read).
    async fn apply(&self, applied: i64, page: Page<Value>) -> Result<i64, (i64, Trouble)> {
        let (feed, pause, count) = (E::SERVICE, self.apply_pause, page.events.len());
        if count == 0 {
            return Ok(applied);
        }
        let events_word = if count == 1 { "event" } else { "events" };
        info!("applying {count} {events_word} of the {feed} feed, after event {applied}");
        let written = self.store.write(move |db| {
            let (mut position, mut unreadable) = (position(db, feed)?.0, None);
            let from = position; // a page asked for twice: what is applied already is skipped
            for Event { seq, event } in page.events.into_iter().filter(|e| e.seq > from) {
                // An event the reports cannot read stops them there: skipped,
                // it would be missing from the view without a word.
                match serde_json::from_value::<E>(event) {
                    Ok(event) => event.apply(db)?,
                    Err(error) => {
                        unreadable = Some(format!(
                            "event {seq} is not a {feed} event the reports know ({error})"
                        ));
                        break;
                    }
                }
                position = seq;
                std::thread::sleep(pause);
            }
            let sql = "INSERT INTO positions (feed, seq, epoch) VALUES (?1, ?2, ?3)
                ON CONFLICT (feed) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch";
            db.execute(sql, params![feed, position, page.epoch]).map_err(storage_problem)?;
            Ok((position, unreadable))
        });
        match written.await {
            Ok((position, None)) => Ok(position),
            Ok((position, Some(problem))) => Err((position, problem)),
            Err(problem) => Err((applied, problem.detail)),
        }
        .map_err(|(position, problem)| {
            let problem =
                format!("cannot apply the {feed} feed's events after {position}: {problem}");
            (position, Trouble::Transient(problem))
        })
    }

    /// Records how far the feed is, and its trouble if any.
    fn progressed(&self, applied: i64, last_seq: Option<i64>, trouble: Option<&Trouble>) {
        let mut progress = self.progress.0.lock().expect("progress");
        let feed = progress.entry(E::SERVICE).or_default();
        (feed.applied, feed.last_seq) = (applied, last_seq.or(feed.last_seq));
        (feed.problem, feed.stopped) = match trouble {
            None => (None, false),
            Some(Trouble::Transient(problem)) => (Some(problem.clone()), false),
            Some(Trouble::Replaced(problem)) => (Some(problem.clone()), true),
        };
        // For Prometheus: how far the view is, and how far behind.
        gauge!("reports_feed_position", "feed" => E::SERVICE).set(applied as f64);
        if let Some(last_seq) = feed.last_seq {
            let behind = (last_seq - applied).max(0) as f64;
            gauge!("reports_feed_lag_events", "feed" => E::SERVICE).set(behind);
        }
    }
}

/// `GET /<user_id>`: the user's report, or 404 (no event of theirs yet).
async fn get(
    store: web::Data<Arc<Store>>,
    user_id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let id = user_id.clone();
    let report: Option<Report> = store.read(move |db| store::get(db, &id)).await?;
    let detail = format!("no report for the user {user_id} (yet: reports lag a little)");
    Ok(HttpResponse::Ok().json(report.ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, detail))?))
}

/// `GET /`: the first hundred reports, by user, and how far each feed is.
async fn list(
    store: web::Data<Arc<Store>>,
    progress: web::Data<Progress>,
) -> Result<HttpResponse, Problem> {
    let reports: Vec<Report> = store.read(store::list).await?;
    let feeds = progress.0.lock().expect("progress").clone();
    Ok(HttpResponse::Ok().json(json!({ "reports": reports, "feeds": feeds })))
}

/// Per feed, a check that says how far behind the reports are. Warn when a
/// feed cannot be followed for now: the reports still answer, from older
/// data. Fail when a feed was replaced: they will not catch up without a
/// rebuild.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    progress: web::Data<Progress>,
) -> HttpResponse {
    let now = progress.0.lock().expect("progress").clone();
    let feeds = [("feed:users", UserEvent::SERVICE), ("feed:accounts", AccountEvent::SERVICE)];
    let checks = feeds.map(|(check, feed)| {
        let state = now.get(feed).cloned().unwrap_or_default();
        let when_failing = if state.stopped { Health::Fail } else { Health::Warn };
        DependencyCheck::new(check, when_failing, async move {
            let applied = state.applied;
            match (state.problem, state.last_seq) {
                (Some(problem), _) => {
                    Err(format!("{problem}; the reports have events up to {applied}"))
                }
                (None, Some(last)) => Ok(format!(
                    "applied events up to {applied} of {last}: {} behind",
                    (last - applied).max(0)
                )),
                (None, None) => Err("not followed yet".to_string()),
            }
        })
    });
    crate::health_report(&overridden, checks.into()).await
}
