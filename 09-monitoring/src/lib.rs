//! Step 09: monitoring: every service exposes Prometheus metrics.
//!
//! What this step adds to step 08: `monitoring.rs`. Every service counts
//! and times its requests, its calls and its circuits' states, and serves
//! them at `/metrics`; Prometheus finds every instance through the
//! registry (`prometheus/`). Start with `monitoring.rs`, then see where
//! `upstream.rs`'s `call` records each call, and where `platform/serve.rs`
//! counts every request and serves `/metrics`.
//!
//! `registry` is the stand-in for Consul, and `platform/` the frame every
//! service stands on (running and stopping a service, the shape of errors,
//! the launcher): no step teaches them.

pub mod gateway;
pub mod service1;
pub mod service2;

mod breaker;
mod discovery;
mod guards;
mod health;
mod monitoring;
mod registration;
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
    Problem, RunOptions, StoppedBy, http_url, listen, on_every_get, only_get, run, serve,
    shutdown_signal,
};
