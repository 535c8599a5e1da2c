//! Step 10: CQRS: commands change the data of their own service, a report reads them all.
//!
//! What this step adds to step 09: `users.rs` and `accounts.rs` take
//! commands, each with a database of its own (`store.rs`), where every
//! change is written with its event in one transaction (`events.rs`, the
//! outbox) and served as a feed; `reports.rs` follows the feeds into a read
//! model of its own, eventually consistent, with nothing lost. Start with
//! `events.rs`, then `users.rs`, `accounts.rs` and `reports.rs`; `demo.rs`
//! plays the scenario.
//!
//! `registry` is the stand-in for Consul, and `platform/` the frame every
//! service stands on (running and stopping a service, the shape of errors,
//! the launcher): no step teaches them.

pub mod accounts;
pub mod demo;
pub mod gateway;
pub mod reports;
pub mod service1;
pub mod service2;
pub mod users;

mod breaker;
mod discovery;
mod events;
mod guards;
mod health;
mod monitoring;
mod registration;
mod store;
mod telemetry;
mod upstream;

pub mod platform;
pub mod registry;

pub use breaker::{Breaker, BreakerOptions, Breakers, breaker_states};
pub use discovery::Discovery;
pub use health::{DependencyCheck, HEALTH_CHECK_TIMEOUT, Health, HealthOverride, health_report};
pub use registration::{REGISTRY_URL, Registered, Registration, RegistrationOptions};
pub use upstream::{Body, CallError, Upstream, http_client};

// The frame's items at the root too, where the registry and the tests name them.
pub use platform::{
    Problem, RunOptions, StoppedBy, http_url, json_config, listen, no_such_path, not_allowed,
    on_every_get, only_get, query_config, run, serve, shutdown_signal,
};
