//! What the registry tells Prometheus: which instances to scrape, and how
//! many of each service are healthy.
//!
//! Prometheus must find what to scrape, and instances come and go: a list
//! of addresses in its config would be stale by the next `kill -9`. The
//! registry already knows them all, so it serves them as targets of
//! Prometheus's HTTP service discovery (the Prometheus that Debian ships
//! has no Consul discovery): every instance, whatever its health, so that
//! a sick one is scraped too, with its service and health as labels; and
//! the registry itself, first.
//!
//! Its own metrics count what only it sees: the checks it runs
//! (`registry_checks_total`, counted where they run), and the instances
//! of each service in each status (`registry_instances`), written at each
//! scrape from the catalog, so that a service gone leaves no series behind.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::NAME;
use super::state::{Catalog, Registry, Status};

/// The registry's own address, for Prometheus.
pub(super) struct Itself(SocketAddr);

impl Itself {
    /// Where the registry listens (this machine's loopback address when it
    /// listens on every address).
    pub(super) fn of(listener: &TcpListener) -> io::Result<Itself> {
        let mut itself = listener.local_addr()?;
        if itself.ip().is_unspecified() {
            itself.set_ip([127, 0, 0, 1].into());
        }
        Ok(Itself(itself))
    }
}

/// `GET /prometheus/targets`: every instance and the registry, as
/// Prometheus's HTTP service discovery takes them.
pub(super) async fn targets(
    registry: web::Data<Registry>,
    itself: web::Data<Itself>,
) -> HttpResponse {
    let itself = json!({
        "targets": [itself.0.to_string()],
        "labels": { "service": NAME, "service_id": NAME, "health": "passing" },
    });
    registry.read(|catalog| {
        let groups: Vec<Value> = std::iter::once(itself)
            .chain(catalog.instances.values().map(|instance| {
                json!({
                    "targets": [instance.host_and_port()],
                    "labels": {
                        "service": instance.name,
                        "service_id": instance.id,
                        "health": instance.status().as_str(),
                    },
                })
            }))
            .collect();
        HttpResponse::Ok().json(groups)
    })
}

impl Registry {
    /// How many instances of each service registered are in each status, as
    /// Prometheus's `registry_instances` counts them: written at each scrape
    /// (`monitoring.rs`), so that a service gone leaves no series behind.
    pub fn instance_counts(&self) -> BTreeMap<(String, &'static str), u32> {
        self.read(Catalog::instance_counts)
    }
}

impl Catalog {
    /// How many instances of each service registered are in each status
    /// (all three, 0 included).
    fn instance_counts(&self) -> BTreeMap<(String, &'static str), u32> {
        let mut counts = BTreeMap::new();
        for instance in self.instances.values() {
            for status in [Status::Passing, Status::Warning, Status::Critical] {
                let count = counts.entry((instance.name.clone(), status.as_str())).or_default();
                *count += u32::from(instance.status() == status);
            }
        }
        counts
    }
}
