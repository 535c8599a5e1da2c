//! Step 06: health endpoints, and a registry that checks them.
//!
//! What this step adds to step 05: `health.rs`. Every service answers
//! `/healthz` with what it checks (a dependency down makes it degraded, not
//! dead); the registry calls it on every instance, and discovery leaves out
//! the critical ones. Start with `health.rs`, then see each service's
//! `/healthz` (`service1.rs`, `service2.rs`, `gateway.rs`) and where
//! `platform/serve.rs` sets up the override.
//!
//! `registry` is the stand-in for Consul, and `platform/` the frame every
//! service stands on (running and stopping a service, the shape of errors,
//! the launcher): no step teaches them.

pub mod gateway;
pub mod service1;
pub mod service2;

mod discovery;
mod guards;
mod health;
mod registration;
mod upstream;

pub mod platform;
pub mod registry;

pub use discovery::Discovery;
pub use health::{DependencyCheck, HEALTH_CHECK_TIMEOUT, Health, HealthOverride, health_report};
pub use registration::{REGISTRY_URL, Registered, Registration, RegistrationOptions};
pub use upstream::{Body, CallError, Upstream, http_client};

// The frame's items at the root too, where the registry and the tests name them.
pub use platform::{
    Problem, RunOptions, StoppedBy, http_url, listen, on_every_get, only_get, run, serve,
    shutdown_signal,
};
