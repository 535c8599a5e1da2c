//! users: the people, their names and states. The write side of CQRS: it
//! takes commands (create, rename, change state), keeps its own data in its
//! own database, and tells of every change in its event feed, which the
//! reports service follows.
//!
//! `POST /` creates, `GET /<id>` reads, `PATCH /<id>` changes, `GET /`
//! lists, `GET /events` is the feed. Through the gateway: `/api/users/…`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{self, Store, StoreOptions, storage_problem};
use crate::{HealthOverride, Problem, RegistrationOptions};

pub const NAME: &str = "users";

/// The users service's options; each can also be set in the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Port to listen on
    #[arg(long, env = "USERS_PORT", default_value_t = 3005)]
    pub port: u16,

    #[command(flatten)]
    pub store: StoreOptions,

    #[command(flatten)]
    pub registration: RegistrationOptions,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);";

/// The states a user can be in.
const STATES: [&str; 3] = ["active", "suspended", "closed"];

pub fn server(listener: TcpListener, options: Options) -> io::Result<Server> {
    let store = Store::open(&options.store, NAME, SCHEMA).map_err(io::Error::other)?;
    let store = web::Data::new(store);
    crate::serve(listener, move |routes| {
        routes.app_data(store.clone()).app_data(crate::json_config());
        routes.app_data(crate::query_config());
        routes.route("/healthz", web::get().to(healthz));
        routes.route("/events", web::get().to(events::feed));
        let (list_or_create, one) =
            (crate::not_allowed("GET, POST"), crate::not_allowed("GET, PATCH"));
        routes.service(web::resource("/").get(list).post(create).default_service(list_or_create));
        routes.service(web::resource("/{id}").get(get).patch(change).default_service(one));
        routes.default_service(web::to(crate::no_such_path));
    })
}

#[derive(Serialize)]
struct User {
    id: String,
    name: String,
    state: String,
    updated_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    id: String,
    name: String,
    #[serde(default = "active")]
    state: String,
}

fn active() -> String {
    "active".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    name: Option<String>,
    state: Option<String>,
}

/// `POST /` with `{"id": "alice", "name": "Alice"}` (and a `state`, "active"
/// if not given): 201 and the user; 409 if the id is taken.
async fn create(
    store: web::Data<Arc<Store>>,
    new: web::Json<NewUser>,
) -> Result<HttpResponse, Problem> {
    let NewUser { id, name, state } = new.into_inner();
    events::check_id("a user's id", &id)?;
    let name = check_name(&name)?;
    check_state(&state)?;
    let user = store
        .write(move |db| {
            let user = User { id, name, state, updated_at: events::now() };
            let added = db
                .execute(
                    "INSERT INTO users (id, name, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![user.id, user.name, user.state, user.updated_at],
                )
                .map_err(storage_problem)?;
            if added == 0 {
                let detail = format!("a user with the id {} exists already", user.id);
                return Err(Problem::new(StatusCode::CONFLICT, detail));
            }
            events::append(db, "user_created", &user.id, &json!(user))?;
            Ok(user)
        })
        .await?;
    // Relative: `ann` from `/` (this service) or `/api/users/` (the gateway).
    Ok(HttpResponse::Created().insert_header((header::LOCATION, user.id.clone())).json(user))
}

/// `PATCH /<id>` with a new `name`, a new `state`, or both.
async fn change(
    store: web::Data<Arc<Store>>,
    id: web::Path<String>,
    change: web::Json<UserChange>,
) -> Result<HttpResponse, Problem> {
    let UserChange { name, state } = change.into_inner();
    if name.is_none() && state.is_none() {
        let detail = "nothing to change: send a new \"name\", a new \"state\", or both";
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    let name = name.as_deref().map(check_name).transpose()?;
    if let Some(state) = &state {
        check_state(state)?;
    }
    let id = id.into_inner();
    let user = store
        .write(move |db| {
            let mut user = find(db, &id)?;
            user.name = name.unwrap_or(user.name);
            user.state = state.unwrap_or(user.state);
            user.updated_at = events::now();
            db.execute(
                "UPDATE users SET name = ?2, state = ?3, updated_at = ?4 WHERE id = ?1",
                params![user.id, user.name, user.state, user.updated_at],
            )
            .map_err(storage_problem)?;
            events::append(db, "user_changed", &user.id, &json!(user))?;
            Ok(user)
        })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `GET /<id>`: the user, or 404.
async fn get(store: web::Data<Arc<Store>>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let user = store.read(move |db| find(db, &id)).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `GET /`: the first hundred users, by id.
async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let users = store
        .read(|db| {
            let mut statement = db
                .prepare("SELECT id, name, state, updated_at FROM users ORDER BY id LIMIT 100")
                .map_err(storage_problem)?;
            let users = statement.query_map([], user_from_row).map_err(storage_problem)?;
            users.collect::<rusqlite::Result<Vec<User>>>().map_err(storage_problem)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

fn find(db: &Connection, id: &str) -> Result<User, Problem> {
    db.query_row("SELECT id, name, state, updated_at FROM users WHERE id = ?1", [id], user_from_row)
        .optional()
        .map_err(storage_problem)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no user has the id {id}")))
}

fn user_from_row(row: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User { id: row.get(0)?, name: row.get(1)?, state: row.get(2)?, updated_at: row.get(3)? })
}

fn check_name(name: &str) -> Result<String, Problem> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        let detail = "a user's name is 1 to 100 characters";
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    Ok(name.to_string())
}

fn check_state(state: &str) -> Result<(), Problem> {
    if !STATES.contains(&state) {
        let detail = format!("{state:?} is not a state; a user is {}", STATES.join(", "));
        return Err(Problem::new(StatusCode::BAD_REQUEST, detail));
    }
    Ok(())
}

/// users depends on nothing but its database, which it reads to answer.
async fn healthz(
    overridden: web::Data<HealthOverride>,
    store: web::Data<Arc<Store>>,
) -> HttpResponse {
    let database = async move {
        let count = store
            .read(|db| {
                db.query_row("SELECT COUNT(*) FROM users", [], |row| row.get::<_, i64>(0))
                    .map_err(storage_problem)
            })
            .await;
        count
            .map(|count| format!("the database answers: {count} users"))
            .map_err(|problem| problem.detail)
    };
    let checks = vec![crate::Check::new("database", crate::Health::Fail, database)];
    crate::health_report(&overridden, checks).await
}
