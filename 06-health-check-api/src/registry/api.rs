//! The part of Consul's HTTP API the workshop's services use: their writes
//! (register, report a check, deregister) and their reads (the health of a
//! service's instances, the catalog of services).
//!
//! The paths, the bodies, the status codes and the error messages are
//! Consul's own, so that a service cannot tell this registry from a Consul
//! agent, and neither can Consul's clients. That is why errors here are
//! plain text and not problem+json like the rest of the workshop: it is
//! what those clients expect. Reads carry `X-Consul-Index`, the catalog's
//! index when the answer was taken.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use super::registration::{LONGEST_OUTPUT, cut, parse_registration};
use super::state::{MOST_INSTANCES, Registry, RegistryFull, Reported, Status};

/// The registry is one Consul "node" in one datacenter.
const NODE: &str = "workshop";
const DATACENTER: &str = "dc1";

/// `PUT /v1/agent/service/register`: adds an instance, or replaces it.
pub(super) async fn register(registry: web::Data<Registry>, body: Bytes) -> HttpResponse {
    let new = match parse_registration(&body) {
        Ok(new) => new,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    match registry.write(|catalog| catalog.register(new)) {
        Ok(()) => HttpResponse::Ok().finish(),
        // 507 Insufficient Storage: nothing is wrong with the registration,
        // and it may succeed once other instances are gone.
        Err(RegistryFull) => plain(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "Registry full: it keeps at most {MOST_INSTANCES} instances; deregister one first"
            ),
        ),
    }
}

/// `PUT /v1/agent/service/deregister/:id`
pub(super) async fn deregister(
    registry: web::Data<Registry>,
    id: web::Path<String>,
) -> HttpResponse {
    let removed = registry.write(|catalog| {
        let removed = catalog.instances.remove(id.as_str()).is_some();
        if removed {
            catalog.bump();
        }
        removed
    });
    if removed {
        info!("{id} deregistered");
        HttpResponse::Ok().finish()
    } else {
        let message = format!(
            "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
        );
        plain(StatusCode::NOT_FOUND, message)
    }
}

#[derive(Deserialize)]
pub(super) struct Note {
    note: Option<String>,
}

/// `PUT /v1/agent/check/pass/:id` (and warn, fail): a TTL check's heartbeat.
pub(super) async fn set_check(
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
    note: web::Query<Note>,
) -> HttpResponse {
    let (status, check_id) = path.into_inner();
    let status = match status.as_str() {
        "pass" => Status::Passing,
        "warn" => Status::Warning,
        "fail" => Status::Critical,
        _ => return plain(StatusCode::NOT_FOUND, format!("no such endpoint: check/{status}")),
    };
    let output: String = note.into_inner().note.unwrap_or_default();
    // Consul keeps this much of a check's output (`check_output_max_size`):
    // it is for the dashboard, not a store.
    let output = cut(&output, LONGEST_OUTPUT).to_string();
    match registry.write(|catalog| catalog.report(&check_id, status, output)) {
        Reported::Done => HttpResponse::Ok().finish(),
        Reported::UnknownCheck => plain(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown check ID \"{check_id}\". Ensure that the check ID is passed, not the check name."
            ),
        ),
        Reported::NotTtl => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CheckID \"{check_id}\" does not have associated TTL"),
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct HealthQuery {
    passing: Option<String>,
}

/// A JSON answer with the index it reflects.
fn indexed(index: u64, body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header(("X-Consul-Index", index.to_string())).json(body)
}

/// `GET /v1/health/service/:name`: the instances of a service with their
/// checks; with `?passing`, only those whose every check passes.
pub(super) async fn health(
    registry: web::Data<Registry>,
    name: web::Path<String>,
    query: web::Query<HealthQuery>,
) -> HttpResponse {
    // A bare `?passing` means yes, as in Consul.
    let passing = match query.passing.as_deref() {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(other) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("Invalid value for ?passing: '{other}'"),
            );
        }
    };
    registry.read(|catalog| {
        let entries: Vec<Value> = catalog
            .instances
            .values()
            .filter(|instance| instance.name == *name)
            .filter(|instance| !passing || instance.status() == Status::Passing)
            .map(|instance| {
                json!({
                    "Node": { "Node": NODE, "Address": "127.0.0.1", "Datacenter": DATACENTER },
                    "Service": {
                        "ID": instance.id,
                        "Service": instance.name,
                        "Address": instance.address,
                        "Port": instance.port,
                    },
                    "Checks": instance.checks.iter().map(|check| json!({
                        "CheckID": check.id,
                        "Name": check.name,
                        "Status": check.status,
                        "Output": check.output,
                        "ServiceID": instance.id,
                        "ServiceName": instance.name,
                        "Type": check.probe.kind(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        indexed(catalog.index, entries)
    })
}

/// `GET /v1/catalog/services`: every service name (with its tags, in
/// Consul; this registry keeps no tags).
pub(super) async fn catalog_services(registry: web::Data<Registry>) -> HttpResponse {
    registry.read(|catalog| {
        let services: BTreeMap<&str, [&str; 0]> =
            catalog.instances.values().map(|instance| (instance.name.as_str(), [])).collect();
        indexed(catalog.index, services)
    })
}

/// `GET /v1/status/leader`: the address of the cluster's leader, which is
/// always this registry. Services ask it to learn that the registry
/// answers (the check of their `/healthz`), as they would ask Consul.
pub(super) async fn leader() -> HttpResponse {
    HttpResponse::Ok().json("127.0.0.1:8300")
}

/// Any other path: a 404, in plain text like every error here.
pub(super) async fn no_such_endpoint(request: HttpRequest) -> HttpResponse {
    plain(StatusCode::NOT_FOUND, format!("no such endpoint: {}", request.path()))
}

/// An error as Consul answers it: the message, as plain text.
pub(super) fn plain(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(message.into())
}
