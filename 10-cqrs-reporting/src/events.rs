//! The write side's storage: a service's own SQLite database, with the
//! transactional outbox and the event feed that the users and accounts
//! services share.
//!
//! - **Outbox.** A command changes the service's table *and* appends the
//!   event that says so to its `events` table in one transaction: both are
//!   stored, or neither. No event without its write, no write without its
//!   event, whatever fails and whenever the process dies.
//! - **Sequence.** Each event gets the next number of the service's
//!   sequence (`seq`), in the order the transactions committed.
//! - **Feed.** `GET /events?after=N` serves the events after `N`, in that
//!   order, a page (`limit`) at a time. With `wait`, it holds the request
//!   until there is one (long polling): a follower learns of an event the
//!   moment it is committed, without asking every few milliseconds.
//!
//! - **Epoch.** A feed's history is its database's: a new database (the
//!   old one deleted, or restored from elsewhere) numbers new events from 1
//!   again. Each database gets an id when it is made, its epoch, which every
//!   page of the feed carries, so that a follower can tell.
//!
//! A follower that remembers the last `seq` it applied (and the epoch it
//! was of) can stop, crash and come back: it asks for what came after, and
//! misses nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::Problem;

/// Where the write and read services keep their databases, one file each;
/// each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreOptions {
    /// Folder of the service's SQLite database (made if missing; it
    /// survives restarts)
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// One event, as it is stored and served.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// The id of what changed: a user's, an account's.
    pub subject: String,
    /// What it is now, whole: applying the event needs nothing else.
    pub data: Value,
    pub at: String,
}

/// Which history a feed is: the id its database got when it was made.
/// Two pages with the same `seq` but different epochs are different events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(String);

impl Epoch {
    fn new() -> Epoch {
        Epoch(format!("{:016x}", fastrand::u64(..)))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ToSql for Epoch {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for Epoch {
    fn column_result(value: ValueRef) -> FromSqlResult<Self> {
        String::column_result(value).map(Epoch)
    }
}

/// A service's database, its epoch, and the last `seq` committed, for the
/// feed's waiting requests to watch.
pub struct Store {
    connection: Mutex<Connection>,
    epoch: Epoch,
    committed: watch::Sender<i64>,
}

impl Store {
    /// Opens (or makes) `<data_dir>/<service>.sqlite` with the service's
    /// tables and the events table.
    pub fn open(options: &StoreOptions, service: &str, schema: &str) -> Result<Arc<Store>, String> {
        let path = options.data_dir.join(format!("{service}.sqlite"));
        let connection = open(&options.data_dir, &path, schema)
            .map_err(|problem| format!("cannot open its database {}: {problem}", path.display()))?;
        let cannot_read = |problem| format!("cannot read {}: {problem}", path.display());
        let last: i64 =
            connection.query_row(LAST_SEQ, [], |row| row.get(0)).map_err(cannot_read)?;
        let epoch: Epoch = connection
            .query_row("SELECT epoch FROM feed", [], |row| row.get(0))
            .map_err(cannot_read)?;
        Ok(Arc::new(Store {
            connection: Mutex::new(connection),
            epoch,
            committed: watch::channel(last).0,
        }))
    }

    /// Runs `upgrade` on the database now, before the service serves: for
    /// a change of schema that a database made by an older version needs.
    pub fn upgrade(
        &self,
        upgrade: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<(), String> {
        upgrade(&self.connection.lock().expect("database"))
            .map_err(|problem| format!("cannot upgrade its database: {problem}"))
    }

    /// Runs `change` in one transaction, on a thread where blocking is
    /// fine: committed if it returns Ok, rolled back (nothing written, no
    /// event) if it returns a problem.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&Transaction) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let store = self.clone();
        let written = web::block(move || {
            let mut connection = store.connection.lock().expect("database");
            let transaction = connection.transaction().map_err(storage_problem)?;
            let answer = change(&transaction)?; // a problem drops it: rollback
            let last: i64 =
                transaction.query_row(LAST_SEQ, [], |row| row.get(0)).map_err(storage_problem)?;
            transaction.commit().map_err(storage_problem)?;
            // Wakes the feed's waiting requests.
            store.committed.send_replace(last);
            Ok(answer)
        });
        written.await.map_err(|_| storage_problem("the database thread failed"))?
    }

    /// Runs `look` on the database, on a thread where blocking is fine.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        look: impl FnOnce(&Connection) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let store = self.clone();
        let read = web::block(move || look(&store.connection.lock().expect("database")));
        read.await.map_err(|_| storage_problem("the database thread failed"))?
    }
}

/// The last `seq` committed (0 for none).
const LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

fn open(folder: &Path, path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    std::fs::create_dir_all(folder).map_err(|error| {
        rusqlite::Error::InvalidPath(PathBuf::from(format!("{}: {error}", folder.display())))
    })?;
    let connection = Connection::open(path)?;
    // Write-ahead log: a commit is one append to the log, and another
    // process (sqlite3 on the command line, say) can read while the
    // service writes. (Within the service, one connection takes one
    // command at a time: that is also what numbers the events in order.)
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.execute_batch(schema)?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            subject TEXT NOT NULL,
            data TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS feed (
            one_row INTEGER PRIMARY KEY CHECK (one_row = 1),
            epoch TEXT NOT NULL
        );",
    )?;
    // The epoch is chosen once, with the database (or, for one made before
    // epochs, the first time this version opens it).
    connection
        .execute("INSERT OR IGNORE INTO feed (one_row, epoch) VALUES (1, ?1)", [Epoch::new()])?;
    Ok(connection)
}

/// The problem for a database that failed: not the client's fault.
pub fn storage_problem(error: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the database failed: {error}"))
}

/// Now, as the events and the tables say it: RFC 3339, in UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Appends an event to the outbox, in the transaction of the write it
/// tells of.
pub fn append(
    transaction: &Transaction,
    kind: &str,
    subject: &str,
    data: &Value,
) -> Result<(), Problem> {
    transaction
        .execute(
            "INSERT INTO events (type, subject, data, at) VALUES (?1, ?2, ?3, ?4)",
            params![kind, subject, data.to_string(), now()],
        )
        .map_err(storage_problem)?;
    Ok(())
}

/// Paths a service serves itself, which cannot be ids: `GET /events` must
/// stay the feed.
const RESERVED: [&str; 4] = ["events", "healthz", "metrics", "breakers"];

/// Checks an id chosen by a client: 1 to 64 letters, digits, `-` or `_`,
/// so that it is safe in a URL's path, and not a path of the service's own.
pub fn check_id(what: &str, id: &str) -> Result<(), Problem> {
    let fits = (1..=64).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !fits {
        let detail = format!("{what} is 1 to 64 letters, digits, - or _; not {id:?}");
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    if RESERVED.contains(&id) {
        let detail = format!("{what} cannot be {id:?}: the service serves /{id} itself");
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    Ok(())
}

/// The longest a feed request may wait for new events.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// The most events a feed request may ask for at once.
const LARGEST_PAGE: i64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The last `seq` the follower has; 0 for all.
    #[serde(default)]
    after: i64,
    /// How many events at most (default 100).
    limit: Option<i64>,
    /// How long to wait when there is nothing after `after` yet ("10s").
    wait: Option<String>,
}

/// A page of the feed: the events after `after`, the last `seq` there is,
/// so that a follower knows how far behind it is, and the feed's epoch, so
/// that it knows which history they are of.
#[derive(Serialize, Deserialize)]
pub struct Page {
    pub events: Vec<Event>,
    pub last_seq: i64,
    pub epoch: Epoch,
}

/// `GET /events?after=N&limit=M&wait=10s`: the events after `N`, in order.
pub async fn feed(
    store: web::Data<Arc<Store>>,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, Problem> {
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, detail);
    let after = query.after;
    if after < 0 {
        return Err(bad(format!("after={after}: the first event is 1, so `after` is 0 or more")));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=LARGEST_PAGE).contains(&limit) {
        return Err(bad(format!("limit={limit}: ask for 1 to {LARGEST_PAGE} events")));
    }
    let wait = match &query.wait {
        None => Duration::ZERO,
        Some(wait) => humantime::parse_duration(wait)
            .ok()
            .filter(|wait| *wait <= LONGEST_WAIT)
            .ok_or_else(|| bad(format!("wait={wait}: a duration of at most 60s, such as 10s")))?,
    };
    // Watch for commits before reading: one that lands in between still
    // wakes us.
    let mut committed = store.committed.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let store = store.get_ref().clone();
        let epoch = store.epoch.clone();
        let page = store.read(move |db| events_after(db, after, limit, epoch)).await?;
        // A follower that has more than there is (this database was
        // replaced) gets `last_seq` at once, to notice.
        if !page.events.is_empty() || after > page.last_seq {
            return Ok(HttpResponse::Ok().json(page));
        }
        tokio::select! {
            waited = tokio::time::timeout_at(deadline, committed.changed()) => {
                if !matches!(waited, Ok(Ok(()))) {
                    return Ok(HttpResponse::Ok().json(page)); // nothing new in time
                }
            }
            // The service is stopping: what there is, at once.
            () = crate::stopping() => return Ok(HttpResponse::Ok().json(page)),
        }
    }
}

fn events_after(db: &Connection, after: i64, limit: i64, epoch: Epoch) -> Result<Page, Problem> {
    let mut statement = db
        .prepare_cached(
            "SELECT seq, type, subject, data, at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(storage_problem)?;
    let events = statement
        .query_map(params![after, limit], |row| {
            let data: String = row.get(3)?;
            Ok(Event {
                seq: row.get(0)?,
                kind: row.get(1)?,
                subject: row.get(2)?,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
                at: row.get(4)?,
            })
        })
        .and_then(Iterator::collect::<rusqlite::Result<Vec<Event>>>)
        .map_err(storage_problem)?;
    let last_seq = db.query_row(LAST_SEQ, [], |row| row.get(0)).map_err(storage_problem)?;
    Ok(Page { events, last_seq, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(test: &str) -> (Arc<Store>, PathBuf) {
        let folder =
            std::env::temp_dir().join(format!("workshop-events-{test}-{}", std::process::id()));
        let options = StoreOptions { data_dir: folder.clone() };
        let schema = "CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY);";
        (Store::open(&options, "test", schema).unwrap(), folder)
    }

    fn count(store: &Store, table: &str) -> i64 {
        let db = store.connection.lock().unwrap();
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).unwrap()
    }

    #[actix_web::test]
    async fn a_write_and_its_event_are_stored_together_or_not_at_all() {
        let (store, folder) = store("atomic");
        let mut committed = store.committed.subscribe();

        // A command that writes, appends its event, then fails: nothing stays.
        let failed = store
            .write(|db| {
                db.execute("INSERT INTO things (id) VALUES ('a')", []).map_err(storage_problem)?;
                append(db, "thing_added", "a", &serde_json::json!({ "id": "a" }))?;
                Err::<(), _>(Problem::new(StatusCode::CONFLICT, "changed its mind"))
            })
            .await;
        assert_eq!(failed.unwrap_err().status, 409);
        assert_eq!((count(&store, "things"), count(&store, "events")), (0, 0));
        assert!(!committed.has_changed().unwrap(), "no commit, no wake-up for the feed");

        // The same command succeeding: the row and its event, seq 1.
        store
            .write(|db| {
                db.execute("INSERT INTO things (id) VALUES ('a')", []).map_err(storage_problem)?;
                append(db, "thing_added", "a", &serde_json::json!({ "id": "a" }))
            })
            .await
            .unwrap();
        assert_eq!((count(&store, "things"), count(&store, "events")), (1, 1));
        assert_eq!(*committed.borrow_and_update(), 1);
        let _ = std::fs::remove_dir_all(folder);
    }

    #[actix_web::test]
    async fn a_database_keeps_its_epoch_and_a_new_one_gets_another() {
        let (made, folder) = store("epoch");
        let first = made.epoch.clone();
        drop(made);
        let options = StoreOptions { data_dir: folder.clone() };
        let reopened = Store::open(&options, "test", "").unwrap();
        assert_eq!(reopened.epoch, first, "the same database, the same history");
        drop(reopened);

        std::fs::remove_dir_all(&folder).unwrap();
        let (made_again, folder) = store("epoch");
        assert_ne!(made_again.epoch, first, "a new database, another history");
        let _ = std::fs::remove_dir_all(folder);
    }
}
