//! One module per command of `cargo workshop`, each with its `Args` and
//! its `run`.

pub mod check;
pub mod class;
pub mod diff;
pub mod doctor;
pub mod hint;
pub mod init;
pub mod join;
pub mod leave;
pub mod reset;
pub mod solution;
pub mod status;
pub mod traffic;
