//! The transactional outbox and its feed, which the users and accounts
//! services share: each writes every change *and* the event that tells of
//! it in one transaction, in its own database (`store.rs`), and serves its
//! events in order at `GET /events` (the feed) for the reports service to
//! follow.
//!
//! - **Sequence.** Each event gets the next `seq`, in commit order: a
//!   follower that remembers the last `seq` it applied can stop, crash and
//!   come back, and ask for what came after. It misses nothing.
//! - **Epoch.** A new database (the old one deleted) numbers its events
//!   from 1 again. Each database gets an id when it is made, its epoch, and
//!   every page of the feed carries it, so that a follower can tell.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, Transaction, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::platform::{Problem, Stopping};
use crate::store::{Store, get, last_seq, put, storage_problem};

mod names;
pub use names::{Id, Name};

/// The outbox: stores `record` under `id` and appends the `event` that
/// tells of it, in the same transaction. The one place events are written.
pub fn save(
    db: &Transaction,
    id: &str,
    record: &impl Serialize,
    event: &impl Serialize,
) -> Result<(), Problem> {
    put(db, id, record)?;
    let event = serde_json::to_string(event).map_err(storage_problem)?;
    db.execute("INSERT INTO events (event) VALUES (?1)", [event]).map_err(storage_problem)?;
    Ok(())
}

/// What a create did: made the record, or found it made already, the same.
pub enum Created {
    New,
    /// The same create again: a client retrying after its answer was lost.
    Again,
}

/// The outbox for a new record: saves it under `id` with its `event`. A
/// create is idempotent, as payment APIs make theirs: sent again with the
/// same record (equal once read), it changes nothing and says so; another
/// record under a taken id is a 409.
pub fn create<R>(
    db: &Transaction,
    id: &str,
    record: &R,
    event: &impl Serialize,
    what: &str,
) -> Result<Created, Problem>
where
    R: Serialize + DeserializeOwned + PartialEq,
{
    match get::<R>(db, id)? {
        None => save(db, id, record, event).map(|()| Created::New),
        Some(stored) if stored == *record => Ok(Created::Again),
        Some(_) => {
            let detail = format!(
                "{what} with the id {id} exists already, and is not the one sent \
                 (sent again as it is, a create is answered 200)"
            );
            Err(Problem::new(StatusCode::CONFLICT, detail))
        }
    }
}

impl Created {
    /// 201 and where the record is, or 200 for a create sent again.
    pub fn answer(self, id: &Id, record: &impl Serialize) -> HttpResponse {
        match self {
            // Relative: `ann` from `/` (this service) or `/api/users/` (the gateway).
            Created::New => HttpResponse::Created()
                .insert_header((actix_web::http::header::LOCATION, id.to_string()))
                .json(record),
            Created::Again => HttpResponse::Ok().json(record),
        }
    }
}

/// A page of a feed: events after `after`, the last `seq` there is (how
/// far behind the follower is), and the epoch (which history they are of).
/// The feed passes stored events on as they are; the follower reads them
/// as `E`, its service's enum of events.
#[derive(Serialize, Deserialize)]
pub struct Page<E> {
    pub events: Vec<Event<E>>,
    pub last_seq: i64,
    pub epoch: String,
}

#[derive(Serialize, Deserialize)]
pub struct Event<E> {
    pub seq: i64,
    pub event: E,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "hundred")]
    limit: i64,
    /// How long to wait when there is nothing after `after` yet ("10s").
    wait: Option<String>,
}

fn hundred() -> i64 {
    100
}

/// `GET /events?after=N&limit=M&wait=10s`: the events after `N`, in order.
/// With `wait`, a request with nothing to answer yet is held until there
/// is (long polling): the follower learns of an event when it commits.
pub async fn feed(
    store: web::Data<Arc<Store>>,
    stopping: web::Data<Stopping>,
    query: web::Query<FeedQuery>,
) -> Result<web::Json<Page<serde_json::Value>>, Problem> {
    let FeedQuery { after, limit, wait } = query.into_inner();
    let wait = humantime::parse_duration(wait.as_deref().unwrap_or("0s")).ok();
    if after < 0 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "after is 0 or more"));
    }
    let Some(wait) = wait.filter(|wait| *wait <= Duration::from_secs(60)) else {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "wait is at most 60s, such as 10s"));
    };
    if !(1..=1000).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "limit is 1 to 1000 events"));
    }
    // Watch for commits before reading: one that lands in between still wakes us.
    let mut committed = store.committed.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let epoch = store.epoch.clone();
        let page = store.read(move |db| page_after(db, after, limit, epoch)).await?;
        // A follower that has more than there is (a new database) learns at once.
        if !page.events.is_empty() || after > page.last_seq {
            return Ok(web::Json(page));
        }
        let woken = tokio::select! {
            changed = tokio::time::timeout_at(deadline, committed.changed()) => changed.is_ok(),
            () = stopping.started() => false,
        };
        if !woken {
            return Ok(web::Json(page));
        }
    }
}

fn page_after(
    db: &Connection,
    after: i64,
    limit: i64,
    epoch: String,
) -> Result<Page<serde_json::Value>, Problem> {
    let sql = "SELECT seq, event FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2";
    let mut statement = db.prepare_cached(sql).map_err(storage_problem)?;
    let rows = statement
        .query_map(params![after, limit], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))
        .map_err(storage_problem)?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, event) = row.map_err(storage_problem)?;
        // Not the follower's to guess: a stored event that is not JSON is an error.
        let event = serde_json::from_str(&event)
            .map_err(|error| storage_problem(format_args!("event {seq} is not JSON ({error})")))?;
        events.push(Event { seq, event });
    }
    let last_seq = last_seq(db).map_err(storage_problem)?;
    Ok(Page { events, last_seq, epoch })
}
