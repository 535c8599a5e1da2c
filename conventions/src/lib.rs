//! Not a step: the checks in `tests/` hold every step folder to the
//! workshop's conventions (CONTRIBUTING.md), so that a step added or renamed
//! by hand fails `cargo test --workspace` with a message that says what to
//! fix, instead of drifting out of line with the others.
