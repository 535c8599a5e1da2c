//! Step 07: circuit breakers around every call to another service.
//!
//! What this step adds to step 06: `breaker.rs`. One breaker per instance
//! called: after failures it opens, and calls to that instance fail fast
//! while the others take its share; the gateway's `/` falls back to its
//! last answers. Start with `breaker.rs`, then see where `upstream.rs`'s
//! `call` asks it, and how `discovery.rs` passes over an instance whose
//! circuit is open.
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
mod registration;
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
