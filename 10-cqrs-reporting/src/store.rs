//! Each service's own SQLite database: the records it owns (users, accounts,
//! and the reports' read model), each a JSON document under its id, read
//! and written on threads where blocking is fine, one write at a time. The
//! write services keep their outbox in it too: the table is made here, and
//! the events are written and served in `events.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{ResponseError, web};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::info;

use crate::platform::Problem;

/// Where the services keep their databases: in the workshop's `target/`,
/// which no step's diff shows and which `cargo run` finds from any folder.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreOptions {
    /// Folder of the service's SQLite database (made if missing)
    #[arg(long, env = "DATA_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/workshop-data"))]
    pub data_dir: PathBuf,
}

/// Every service's database has these tables: what it owns (`records`, each
/// a JSON document under its id), its outbox (`events`) and its `epoch`.
const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, record TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS epoch (epoch TEXT NOT NULL);";

/// How long a write waits for another process's write to the same
/// database (sqlite3 on the command line, a backup) before it fails: long
/// enough to outwait a short one; the client's own timeout decides whether
/// it waits that long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A service's database, and the last `seq` committed, which the feed's
/// waiting requests watch.
pub struct Store {
    /// Writes, one at a time.
    writer: Mutex<Connection>,
    /// Reads have a connection of their own: a write waiting for another
    /// process does not hold them up (the write-ahead log lets them read).
    reader: Mutex<Connection>,
    /// Held while the service runs: see `hold_data_dir`.
    _lock: Mutex<Connection>,
    pub path: PathBuf,
    pub(crate) epoch: String,
    pub(crate) committed: watch::Sender<i64>,
    last_write: Mutex<LastWrite>,
}

/// How the last write went, for `/healthz`: a database that answers reads
/// but fails every write (a full disk) is not a healthy one.
enum LastWrite {
    NoneYet,
    Committed,
    Failed { at: SystemTime, problem: String },
}

impl Store {
    /// Opens (or makes) `<data_dir>/<service>.sqlite`, with `tables` of its own.
    pub fn open(
        options: &StoreOptions,
        service: &str,
        tables: &str,
    ) -> std::io::Result<Arc<Store>> {
        std::fs::create_dir_all(&options.data_dir)?;
        let lock = hold_data_dir(&options.data_dir, service)?;
        let path = options.data_dir.join(format!("{service}.sqlite"));
        let connect = || -> rusqlite::Result<_> {
            let db = Connection::open(&path)?;
            db.busy_timeout(BUSY_TIMEOUT)?;
            Ok(db)
        };
        let opened = || -> rusqlite::Result<_> {
            let db = connect()?;
            // Write-ahead log: sqlite3 on the command line can read while we write.
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.execute_batch(&format!("{TABLES}{tables}"))?;
            let new_epoch = format!("{:016x}", fastrand::u64(..));
            db.execute(
                "INSERT INTO epoch SELECT ?1 WHERE NOT EXISTS (SELECT * FROM epoch)",
                [new_epoch],
            )?;
            let epoch = db.query_row("SELECT epoch FROM epoch", [], |row| row.get(0))?;
            let last = last_seq(&db)?;
            Ok((db, connect()?, epoch, last))
        };
        let (writer, reader, epoch, last) = opened().map_err(|error| {
            std::io::Error::other(format!("cannot open its database {}: {error}", path.display()))
        })?;
        info!("{service} keeps its data in {}", path.display());
        Ok(Arc::new(Store {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            _lock: Mutex::new(lock),
            path,
            epoch,
            committed: watch::channel(last).0,
            last_write: Mutex::new(LastWrite::NoneYet),
        }))
    }

    /// Runs `change` in one transaction, on a thread where blocking is fine:
    /// committed if it returns Ok, rolled back (no record, no event) if not.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&Transaction) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let store = self.clone();
        let written = web::block(move || {
            let mut db = store.writer.lock().expect("database");
            // Immediate: the transaction takes the write lock before it reads,
            // waiting for another process's write within the busy timeout. (A
            // deferred one would read first; by the time it may write, what it
            // read may be stale, so SQLite fails it at once: "database is locked".)
            let immediate = TransactionBehavior::Immediate;
            let transaction = db.transaction_with_behavior(immediate).map_err(storage_problem)?;
            let answer = change(&transaction)?;
            let last = last_seq(&transaction).map_err(storage_problem)?;
            transaction.commit().map_err(storage_problem)?;
            store.committed.send_replace(last); // wakes the feed's long polls
            Ok(answer)
        });
        let written = written.await.map_err(storage_problem).and_then(|written| written);
        self.remember(&written);
        written
    }

    /// Remembers how a write went for `/healthz`. A problem of the client's
    /// (a 4xx: no such user, an id taken) says nothing about the database.
    fn remember<T>(&self, written: &Result<T, Problem>) {
        let outcome = match written {
            Ok(_) => LastWrite::Committed,
            Err(problem) if problem.status_code().is_server_error() => {
                LastWrite::Failed { at: SystemTime::now(), problem: problem.detail.clone() }
            }
            Err(_) => return,
        };
        *self.last_write.lock().expect("last write") = outcome;
    }

    /// Runs `look` on the database, on a thread where blocking is fine.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        look: impl FnOnce(&Connection) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let store = self.clone();
        let read = web::block(move || look(&store.reader.lock().expect("database")));
        read.await.map_err(storage_problem)?
    }

    /// For `/healthz`: the database answers.
    pub async fn check(self: &Arc<Self>) -> Result<String, String> {
        let last = self.read(|db| last_seq(db).map_err(storage_problem)).await;
        last.map(|last| format!("the database answers: {last} events")).map_err(|p| p.detail)
    }

    /// For `/healthz`: the last write went through. Once one failed, the
    /// check fails until one succeeds again.
    pub async fn check_writes(self: &Arc<Self>) -> Result<String, String> {
        match &*self.last_write.lock().expect("last write") {
            LastWrite::NoneYet => Ok("no write since the service started".to_string()),
            LastWrite::Committed => Ok("the last write was committed".to_string()),
            LastWrite::Failed { at, problem } => Err(format!(
                "the last write failed, at {}: {problem}",
                humantime::format_rfc3339_seconds(*at)
            )),
        }
    }
}

/// Holds `<data_dir>/<service>.lock` while the service runs, so that a
/// second copy on the same data (`cargo run` in two terminals) stops at
/// start instead of sharing the database with the first. The lock is
/// SQLite's own, on a file of its own (the main database stays open to
/// readers such as sqlite3): the same on every OS, and let go by the OS
/// when the process ends, however it ends.
fn hold_data_dir(data_dir: &Path, service: &str) -> std::io::Result<Connection> {
    let path = data_dir.join(format!("{service}.lock"));
    let held = || -> rusqlite::Result<Connection> {
        let lock = Connection::open(&path)?;
        lock.busy_timeout(Duration::ZERO)?;
        // In this mode, a lock once taken is kept until the connection closes.
        lock.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        lock.execute_batch("BEGIN EXCLUSIVE; COMMIT;")?;
        Ok(lock)
    };
    held().map_err(|error| {
        let (folder, lock) = (data_dir.display(), path.display());
        std::io::Error::other(match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) => format!(
                "another {service} is running on the data in {folder} (it holds {lock}): \
                 stop it first, or give this one a folder of its own with --data-dir (DATA_DIR)"
            ),
            _ => format!("cannot take its lock file {lock}: {error}"),
        })
    })
}

/// The last `seq` in the outbox, 0 while it is empty.
pub(crate) fn last_seq(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))
}

/// The problem for a database that failed: not the client's fault.
pub fn storage_problem(error: impl fmt::Display) -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the database failed: {error}"))
}

/// Stores `record` under `id`, replacing what was there.
pub fn put(db: &Connection, id: &str, record: &impl Serialize) -> Result<(), Problem> {
    let record = serde_json::to_string(record).map_err(storage_problem)?;
    let sql = "INSERT INTO records (id, record) VALUES (?1, ?2)
        ON CONFLICT (id) DO UPDATE SET record = excluded.record";
    db.execute(sql, params![id, record]).map_err(storage_problem)?;
    Ok(())
}

/// The record under `id`, if there is one.
pub fn get<R: DeserializeOwned>(db: &Connection, id: &str) -> Result<Option<R>, Problem> {
    let sql = "SELECT record FROM records WHERE id = ?1";
    let record: Option<String> =
        db.query_row(sql, [id], |row| row.get(0)).optional().map_err(storage_problem)?;
    record.map(|record| serde_json::from_str(&record).map_err(storage_problem)).transpose()
}

/// The first hundred records, by id.
pub fn list<R: DeserializeOwned>(db: &Connection) -> Result<Vec<R>, Problem> {
    let mut statement =
        db.prepare("SELECT record FROM records ORDER BY id LIMIT 100").map_err(storage_problem)?;
    let records =
        statement.query_map([], |row| row.get::<_, String>(0)).map_err(storage_problem)?;
    records
        .map(|record| {
            serde_json::from_str(&record.map_err(storage_problem)?).map_err(storage_problem)
        })
        .collect()
}
