//! `cargo workshop traffic`'s parts: the HTTP client (`http`), the clients
//! and their pace (`load`), counting the answers (`tally`), asking the step
//! what it knows (`step`, and `cqrs` for step 10's writes), and showing it
//! all (`view`, the live screen; `lines`, plain text and JSON).

pub mod cqrs;
pub mod http;
pub mod lines;
pub mod load;
pub mod step;
pub mod tally;
pub mod view;
