//! Step 02: service1 calls service2 over HTTP.
//!
//! What this step adds to step 01: service1 answers by asking service2,
//! through `upstream.rs`: one way out of a service, with a deadline, where
//! what can go wrong (service2 down, too slow, answering garbage) becomes a
//! clear 502 or 504. Start with `upstream.rs`, then see where `service1.rs`
//! calls it.
//!
//! `platform/` is the frame every service stands on (running and stopping
//! a service, the shape of errors, the launcher): no step teaches it.

pub mod service1;
pub mod service2;

mod upstream;

pub mod platform;

pub use upstream::{CallError, Upstream, http_client};

// The frame's items at the root too, where the tests name them.
pub use platform::{http_url, serve};
