//! accounts: each user's accounts and their balances. Like users, a write
//! side of CQRS with a database and an event feed of its own. It does not
//! share users' data: it asks the users service (found in the registry)
//! whether a user exists before it opens an account for them.
//!
//! `POST /` opens, `GET /<id>` reads, `PATCH /<id>` sets the balance,
//! `GET /` lists, `GET /events` is the feed. Through the gateway:
//! `/api/accounts/…`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{self, Store, StoreOptions, storage_problem};
use crate::{Check, Discovery, Health, HealthOverride, Problem, RegistrationOptions};

pub const NAME: &str = "accounts";

/// The accounts service's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "ACCOUNTS_PORT", default_value_t = 3006)]
    pub port: u16,

    /// How long a call to the users service may take ("2s", "500ms")
    #[arg(long, env = "USERS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub users_timeout: Duration,

    #[command(flatten)]
    pub store: StoreOptions,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    balance INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);";

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let store = Store::open(&options.store, NAME, SCHEMA).map_err(io::Error::other)?;
    let store = web::Data::new(store);
    let registry_url = options.registration.registry_url;
    let discovery = web::Data::new(Discovery::new(registry_url, options.users_timeout));
    crate::serve(listener, move |routes| {
        routes.app_data(store.clone()).app_data(crate::json_config());
        routes.app_data(crate::query_config());
        routes.app_data(discovery.clone()).app_data(web::Data::new(crate::http_client()));
        routes.route("/healthz", web::get().to(healthz));
        routes.route("/events", web::get().to(events::feed));
        let (list_or_open, one) =
            (crate::not_allowed("GET, POST"), crate::not_allowed("GET, PATCH"));
        routes.service(web::resource("/").get(list).post(open).default_service(list_or_open));
        routes.service(web::resource("/{id}").get(get).patch(set_balance).default_service(one));
        routes.default_service(web::to(crate::no_such_path));
    })
}

#[derive(Serialize)]
struct Account {
    id: String,
    user_id: String,
    /// In the smallest unit of the currency (cents, satang): whole numbers.
    balance: i64,
    updated_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    id: String,
    user_id: String,
    #[serde(default)]
    balance: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBalance {
    balance: i64,
}

/// `POST /` with `{"id": "alice-main", "user_id": "alice"}` (and a
/// `balance`, 0 if not given): 201 and the account; 422 if there is no such
/// user; 409 if the id is taken.
async fn open(
    store: web::Data<Arc<Store>>,
    discovery: web::Data<Discovery>,
    client: web::Data<awc::Client>,
    new: web::Json<NewAccount>,
) -> Result<HttpResponse, Problem> {
    let NewAccount { id, user_id, balance } = new.into_inner();
    events::check_id("an account's id", &id)?;
    events::check_id("a user's id", &user_id)?;
    check_balance(balance)?;
    // The users service owns the users: ask it. (Users are never deleted,
    // so the answer cannot go stale before the account is written.)
    let users = discovery.find(&client, "users").await?;
    match users.get_json(&client, &format!("/{user_id}")).await {
        Ok(_) => {}
        Err(problem) if problem.upstream_answered(StatusCode::NOT_FOUND) => {
            let detail = format!("no user has the id {user_id}: create the user first");
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail));
        }
        Err(problem) => return Err(problem),
    }
    let account = store
        .write(move |db| {
            let account = Account { id, user_id, balance, updated_at: events::now() };
            let added = db
                .execute(
                    "INSERT INTO accounts (id, user_id, balance, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![account.id, account.user_id, account.balance, account.updated_at],
                )
                .map_err(storage_problem)?;
            if added == 0 {
                let detail = format!("an account with the id {} exists already", account.id);
                return Err(Problem::new(StatusCode::CONFLICT, detail));
            }
            events::append(db, "account_opened", &account.id, &json!(account))?;
            Ok(account)
        })
        .await?;
    // Relative: resolved against the URL the client called.
    Ok(HttpResponse::Created().insert_header((header::LOCATION, account.id.clone())).json(account))
}

/// `PATCH /<id>` with `{"balance": 1500}`.
async fn set_balance(
    store: web::Data<Arc<Store>>,
    id: web::Path<String>,
    new: web::Json<NewBalance>,
) -> Result<HttpResponse, Problem> {
    let (id, balance) = (id.into_inner(), new.balance);
    check_balance(balance)?;
    let account = store
        .write(move |db| {
            let mut account = find(db, &id)?;
            account.balance = balance;
            account.updated_at = events::now();
            db.execute(
                "UPDATE accounts SET balance = ?2, updated_at = ?3 WHERE id = ?1",
                params![account.id, account.balance, account.updated_at],
            )
            .map_err(storage_problem)?;
            events::append(db, "balance_changed", &account.id, &json!(account))?;
            Ok(account)
        })
        .await?;
    Ok(HttpResponse::Ok().json(account))
}

/// `GET /<id>`: the account, or 404.
async fn get(store: web::Data<Arc<Store>>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let account = store.read(move |db| find(db, &id)).await?;
    Ok(HttpResponse::Ok().json(account))
}

/// `GET /`: the first hundred accounts, by id.
async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let accounts = store
        .read(|db| {
            let mut statement = db
                .prepare(
                    "SELECT id, user_id, balance, updated_at FROM accounts ORDER BY id LIMIT 100",
                )
                .map_err(storage_problem)?;
            let accounts = statement.query_map([], account_from_row).map_err(storage_problem)?;
            accounts.collect::<rusqlite::Result<Vec<Account>>>().map_err(storage_problem)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "accounts": accounts })))
}

fn find(db: &Connection, id: &str) -> Result<Account, Problem> {
    db.query_row(
        "SELECT id, user_id, balance, updated_at FROM accounts WHERE id = ?1",
        [id],
        account_from_row,
    )
    .optional()
    .map_err(storage_problem)?
    .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no account has the id {id}")))
}

/// The largest balance an account may hold: far below what would overflow
/// when the reports add a user's accounts up.
const LARGEST_BALANCE: i64 = 1_000_000_000_000;

/// A balance is a whole number of the smallest unit, from 0 to
/// `LARGEST_BALANCE`: an account does not go below zero here.
fn check_balance(balance: i64) -> Result<(), Problem> {
    if !(0..=LARGEST_BALANCE).contains(&balance) {
        let detail =
            format!("a balance is a whole number from 0 to {LARGEST_BALANCE}; not {balance}");
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    Ok(())
}

fn account_from_row(row: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        user_id: row.get(1)?,
        balance: row.get(2)?,
        updated_at: row.get(3)?,
    })
}

/// accounts needs its database (fail) and, to open accounts, the users
/// service (warn: reads and balance changes still work without it).
async fn healthz(
    overridden: web::Data<HealthOverride>,
    store: web::Data<Arc<Store>>,
    discovery: web::Data<Discovery>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let database = async move {
        let count = store
            .read(|db| {
                db.query_row("SELECT COUNT(*) FROM accounts", [], |row| row.get::<_, i64>(0))
                    .map_err(storage_problem)
            })
            .await;
        count.map(|count| format!("the database answers: {count} accounts")).map_err(|p| p.detail)
    };
    let users = async {
        let instance = discovery.find(&client, "users").await.map_err(|p| p.detail)?;
        instance.get_json(&client, "/healthz").await.map_err(|p| p.detail)?;
        Ok(format!("users at {} is healthy", instance.url))
    };
    let checks = vec![
        Check::new("database", Health::Fail, database),
        Check::new("users:reachability", Health::Warn, users),
    ];
    crate::health_report(&overridden, checks).await
}
