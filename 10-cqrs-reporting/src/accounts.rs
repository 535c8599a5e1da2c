//! accounts: each user's accounts and their balances. Like users, a write
//! side of CQRS, with its own database and event feed. It does not read
//! users' data: it asks the users service (found in the registry) whether
//! a user exists before it opens an account for them.
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
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{self, Id};
use crate::platform::{self, Problem, Stopping};
use crate::store::{self, Store, StoreOptions};
use crate::{CallError, DependencyCheck, Discovery, Health, HealthOverride, RegistrationOptions};

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

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: Id,
    pub user_id: Id,
    #[serde(default)]
    pub balance: Balance,
}

/// In the smallest unit of the currency (cents, satang), from 0 to a
/// trillion: far below what would overflow when a user's accounts add up.
#[derive(Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "i64")]
pub struct Balance(pub i64);

impl TryFrom<i64> for Balance {
    type Error = String;

    fn try_from(balance: i64) -> Result<Balance, String> {
        match balance {
            0..=1_000_000_000_000 => Ok(Balance(balance)),
            _ => Err(format!("a balance is a whole number from 0 to 1000000000000; not {balance}")),
        }
    }
}

/// The accounts feed: each event carries the account as it now is.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountEvent {
    AccountOpened(Account),
    BalanceChanged(Account),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBalance {
    balance: Balance,
}

pub fn server(listener: TcpListener, options: Options, stopping: Stopping) -> io::Result<Server> {
    let store = web::Data::new(Store::open(&options.store, NAME, "")?);
    // The feed's long polls answer at once when the service stops.
    let stopping = web::Data::new(stopping);
    let registry_url = options.registration.registry_url;
    let discovery = web::Data::new(Discovery::new(registry_url, options.users_timeout));
    platform::serve(listener, move |routes| {
        routes
            .app_data(store.clone())
            .app_data(stopping.clone())
            .app_data(platform::json_config())
            .app_data(platform::query_config());
        routes.app_data(discovery.clone()).app_data(web::Data::new(crate::http_client()));
        routes.route("/healthz", web::get().to(healthz));
        routes.route("/events", web::get().to(events::feed));
        let all = web::resource("/").get(list).post(open);
        routes.service(all.default_service(platform::not_allowed("GET, POST")));
        let one = web::resource("/{id}").get(get).patch(set_balance);
        routes.service(one.default_service(platform::not_allowed("GET, PATCH")));
        routes.default_service(web::to(platform::no_such_path));
    })
}

/// `POST /` with `{"id": "ann-main", "user_id": "ann"}` (and a `balance`):
/// 201 and the account; the same again, 200; 422 if there is no such user;
/// another account with that id, 409.
async fn open(
    store: web::Data<Arc<Store>>,
    discovery: web::Data<Discovery>,
    client: web::Data<awc::Client>,
    account: web::Json<Account>,
) -> Result<HttpResponse, Problem> {
    let account = account.into_inner();
    // The users service owns the users: ask it. (Users are never deleted,
    // so the answer cannot go stale before the account is written.)
    let users = discovery.find(&client, "users").await?;
    match users.read_json(&client, &format!("/{}", account.user_id)).await {
        Err(CallError::Status(StatusCode::NOT_FOUND, _)) => {
            let detail = format!("no user has the id {}: create the user first", account.user_id);
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail));
        }
        answer => answer.map_err(|error| users.problem(&error))?,
    };
    let (new, event) = (account.clone(), AccountEvent::AccountOpened(account.clone()));
    let created = store
        .write(move |db| events::create(db, &new.id.to_string(), &new, &event, "an account"))
        .await?;
    Ok(created.answer(&account.id, &account))
}

/// `PATCH /<id>` with `{"balance": 1500}`.
async fn set_balance(
    store: web::Data<Arc<Store>>,
    id: web::Path<String>,
    new: web::Json<NewBalance>,
) -> Result<HttpResponse, Problem> {
    let balance = new.balance;
    let account = store
        .write(move |db| {
            let account = Account { balance, ..find(db, &id)? };
            events::save(db, &id, &account, &AccountEvent::BalanceChanged(account.clone()))?;
            Ok(account)
        })
        .await?;
    Ok(HttpResponse::Ok().json(account))
}

/// `GET /<id>`: the account, or 404.
async fn get(store: web::Data<Arc<Store>>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(store.read(move |db| find(db, &id)).await?))
}

/// `GET /`: the first hundred accounts, by id.
async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let accounts: Vec<Account> = store.read(store::list).await?;
    Ok(HttpResponse::Ok().json(json!({ "accounts": accounts })))
}

fn find(db: &rusqlite::Connection, id: &str) -> Result<Account, Problem> {
    store::get(db, id)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no account has the id {id}")))
}

/// accounts needs its database (fail), writes that go through (warn: it
/// still serves reads) and, to open accounts, the users service (warn:
/// reads and balance changes still work without it).
async fn healthz(
    overridden: web::Data<HealthOverride>,
    store: web::Data<Arc<Store>>,
    discovery: web::Data<Discovery>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let users = async {
        let instance = discovery.find(&client, "users").await.map_err(|p| p.detail)?;
        instance.get_json(&client, "/healthz").await.map_err(|p| p.detail)?;
        Ok(format!("users at {} is healthy", instance.url))
    };
    let checks = vec![
        DependencyCheck::new("database", Health::Fail, store.check()),
        DependencyCheck::new("database:writes", Health::Warn, store.check_writes()),
        DependencyCheck::new("users:reachability", Health::Warn, users),
    ];
    crate::health_report(&overridden, checks).await
}
