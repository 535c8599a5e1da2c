//! The behaviour of this step as its README describes it, as a client sees
//! it: one test program for every file of this folder, so that the step is
//! linked once for all of them (and once more for `exercises.rs`).
//!
//! ```sh
//! cargo test -p step02-connect --test behaviour
//! ```

#[path = "../support/mod.rs"]
mod support;

mod launcher;
mod services;
