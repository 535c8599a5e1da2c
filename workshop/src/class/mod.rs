//! The class: an instructor's live view of the room. `cargo workshop class`
//! serves a page on the instructor's laptop; a learner who runs `cargo
//! workshop join` sends it the result of each check from then on, until
//! `cargo workshop leave`.
//!
//! Opt-in, and small on purpose. What leaves a learner's laptop is a
//! `Report` (report.rs) and nothing else: the name they chose, a seat
//! number drawn at random when they joined (so that no one else can write
//! in their row), and for each check the step, the exercise, passed or not,
//! the check's first line and how long ago it ran. No code, no paths, no
//! environment.
//!
//! The learner's side: `joined.rs` (the class this copy is in, and the
//! results not sent yet) and `send.rs` (a request with a deadline, so that a
//! class that does not answer costs a check a moment, never more). The
//! instructor's side: `server.rs` (the routes), `live.rs` (the class as it
//! runs), `room.rs` (who is where, kept in a file) and `page.rs` (the page,
//! escaped); `report.rs` is what
//! goes between them, and its limits.

mod joined;
mod live;
mod outline;
mod page;
mod problem;
mod report;
mod room;
mod send;
mod server;

pub use joined::{Joined, describe_membership};
pub use report::{CODE_LENGTH, check_name, normalize_code};
pub use send::{JOIN_DEADLINE, LEAVE_DEADLINE, Sent, leave, report_checks, send};
pub use server::{Server, ServerOptions};
