//! Step 04: a service registry, and services that find each other through it.
//!
//! What this step adds to step 03: `registration.rs` and `discovery.rs`. A
//! service registers itself with the registry when it starts
//! (`Registration`), keeps its entry alive, and deregisters when it stops;
//! service1 asks the registry where service2 is (`Discovery`) instead of
//! being given its URL. Start with `registration.rs`, then `discovery.rs`
//! and where `service1.rs` asks it, and where `platform/run.rs` registers a
//! service.
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
