//! The frame every service of the step stands on, and which no step
//! teaches: starting a service and stopping it gracefully, the shape of its
//! errors, the answers every service gives the same way, and the launcher
//! that starts the whole step. The lesson is in the files beside this
//! folder; this one may be skipped. It changes from one step to the next
//! only where a pattern plugs into it, and the step's README then names the
//! file.
//!
//! One file per job:
//!
//! - `run.rs`: a service's life, from its first log line to its last;
//! - `listen.rs`: binding its port, with errors that say what to do;
//! - `serve.rs`: its HTTP server, and what every request goes through;
//! - `shutdown.rs`: what tells it to stop (Ctrl-C, SIGTERM, the launcher);
//! - `problem.rs`: errors as clients see them (RFC 9457);
//! - `routes.rs`: answers every service gives the same way (405);
//! - `url.rs`: a URL given as an option, checked when the service starts;
//! - `output.rs`: lines that never wait for a terminal that does not read;
//! - `launcher.rs`: `cargo run` with no service: every service at once.

mod launcher;
mod listen;
mod output;
mod problem;
mod routes;
mod run;
mod serve;
mod shutdown;
mod url;

pub use launcher::launch_all;
pub use listen::listen;
pub use output::Output;
pub use problem::Problem;
pub use routes::{on_every_get, only_get};
pub use run::{RunOptions, run};
pub use serve::serve;
pub use shutdown::{StoppedBy, shutdown_signal};
pub use url::{http_url, path_segment};
