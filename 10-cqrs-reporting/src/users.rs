//! users: a write side of CQRS. It takes commands (create, rename, change
//! state), keeps the users in its own database, and tells of every change
//! in its event feed, which the reports service follows.
//!
//! `POST /` creates, `GET /<id>` reads, `PATCH /<id>` changes, `GET /`
//! lists, `GET /events` is the feed. Through the gateway: `/api/users/…`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{self, Id, Name};
use crate::platform::{self, Problem, Stopping};
use crate::store::{self, Store, StoreOptions};
use crate::{DependencyCheck, Health, HealthOverride, RegistrationOptions};

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

/// A user, as a client creates it, users keeps it and its events tell of
/// it. Bad input is a serde error, and so a 400 that names the field (what
/// an id and a name may hold: `events/names.rs`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: Id,
    pub name: Name,
    #[serde(default)]
    pub state: UserState,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    #[default]
    Active,
    Suspended,
    Closed,
}

/// The users feed: each event carries the user as it now is.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    UserCreated(User),
    UserChanged(User),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    name: Option<Name>,
    state: Option<UserState>,
}

pub fn server(listener: TcpListener, options: Options, stopping: Stopping) -> io::Result<Server> {
    let store = web::Data::new(Store::open(&options.store, NAME, "")?);
    // The feed's long polls answer at once when the service stops.
    let stopping = web::Data::new(stopping);
    platform::serve(listener, move |routes| {
        routes
            .app_data(store.clone())
            .app_data(stopping.clone())
            .app_data(platform::json_config())
            .app_data(platform::query_config());
        routes.route("/healthz", web::get().to(healthz));
        routes.route("/events", web::get().to(events::feed));
        let all = web::resource("/").get(list).post(create);
        routes.service(all.default_service(platform::not_allowed("GET, POST")));
        let one = web::resource("/{id}").get(get).patch(change);
        routes.service(one.default_service(platform::not_allowed("GET, PATCH")));
        routes.default_service(web::to(platform::no_such_path));
    })
}

/// `POST /` with `{"id": "ann", "name": "Ann"}` (and a `state`): 201 and
/// the user; the same again, 200; another user with that id, 409.
async fn create(
    store: web::Data<Arc<Store>>,
    user: web::Json<User>,
) -> Result<HttpResponse, Problem> {
    let user = user.into_inner();
    let (new, event) = (user.clone(), UserEvent::UserCreated(user.clone()));
    let created = store
        .write(move |db| events::create(db, &new.id.to_string(), &new, &event, "a user"))
        .await?;
    Ok(created.answer(&user.id, &user))
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
    let user = store
        .write(move |db| {
            let mut user = find(db, &id)?;
            user.name = name.unwrap_or(user.name);
            user.state = state.unwrap_or(user.state);
            events::save(db, &id, &user, &UserEvent::UserChanged(user.clone()))?;
            Ok(user)
        })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// `GET /<id>`: the user, or 404.
async fn get(store: web::Data<Arc<Store>>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(store.read(move |db| find(db, &id)).await?))
}

/// `GET /`: the first hundred users, by id.
async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let users: Vec<User> = store.read(store::list).await?;
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

fn find(db: &rusqlite::Connection, id: &str) -> Result<User, Problem> {
    store::get(db, id)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no user has the id {id}")))
}

/// users depends on nothing but its database: that it answers (fail), and
/// that writes go through (warn: it still serves reads).
async fn healthz(
    overridden: web::Data<HealthOverride>,
    store: web::Data<Arc<Store>>,
) -> HttpResponse {
    let checks = vec![
        DependencyCheck::new("database", Health::Fail, store.check()),
        DependencyCheck::new("database:writes", Health::Warn, store.check_writes()),
    ];
    crate::health_report(&overridden, checks).await
}
