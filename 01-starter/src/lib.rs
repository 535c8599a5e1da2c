//! Step 01: two services that answer JSON.
//!
//! Each service has a file of its own, read top to bottom: its options,
//! its route, its handler. Start with `service2.rs`, then `service1.rs`;
//! `main.rs` is the command line that starts them.
//!
//! `platform/` is the frame every service stands on (running and stopping
//! a service, the shape of errors, the launcher): no step teaches it.

pub mod service1;
pub mod service2;

pub mod platform;
