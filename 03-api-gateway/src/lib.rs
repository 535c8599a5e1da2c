//! Step 03: an API gateway in front of the services.
//!
//! What this step adds to step 02: `gateway.rs`, the one door of the
//! system: it checks the client's key at the edge, passes `/service1/…`
//! and `/service2/…` on, and answers `/` with both services' answers, as
//! JSON or XML. Start with `gateway.rs`, then see what a call with a body
//! takes in `upstream.rs`; `guards.rs` is what the gateway refuses from a
//! hostile client, and why.
//!
//! `platform/` is the frame every service stands on (running and stopping
//! a service, the shape of errors, the launcher): no step teaches it.

pub mod gateway;
pub mod service1;
pub mod service2;

mod guards;
mod upstream;

pub mod platform;

pub use upstream::{Body, CallError, Upstream, http_client};

// The frame's items at the root too, where the tests name them.
pub use platform::{http_url, serve};
