//! Step 08: distributed tracing: one request through every service is one trace.
//!
//! What this step adds to step 07: `telemetry.rs`. Every request a service
//! serves is a span, every call it makes a child span, and `traceparent`
//! carries the trace from one service to the next; spans go to Jaeger (or
//! `trace-viewer`) over OTLP, and every log line of a request carries its
//! trace id. Start with `telemetry.rs`, then see where `upstream.rs`'s
//! `call` opens a client span, and where `platform/run.rs` and
//! `platform/serve.rs` start telemetry and wrap every request in its span.
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
