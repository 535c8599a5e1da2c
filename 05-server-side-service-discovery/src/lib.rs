//! Step 05: an API gateway that finds services in the registry.
//!
//! What this step adds to step 04: the gateway asks the registry too.
//! `/api/<service>/…` goes to any registered service, spread round-robin
//! over its instances, and no service's URL is configured anywhere. Start
//! with `gateway.rs`, then see what `discovery.rs` adds for it: which
//! instance to call, or why none (404 or 503).
//!
//! `registry` is the stand-in for Consul, and `platform/` the frame every
//! service stands on (running and stopping a service, the shape of errors,
//! the launcher): no step teaches them.

pub mod gateway;
pub mod service1;
pub mod service2;

mod discovery;
mod guards;
mod registration;
mod upstream;

pub mod platform;
pub mod registry;

pub use discovery::Discovery;
pub use registration::{REGISTRY_URL, Registered, Registration, RegistrationOptions};
pub use upstream::{Body, CallError, Upstream, http_client};

// The frame's items at the root too, where the registry and the tests name them.
pub use platform::{
    Problem, RunOptions, StoppedBy, http_url, listen, on_every_get, only_get, run, serve,
    shutdown_signal,
};
