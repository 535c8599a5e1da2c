//! `cargo workshop`: the learner's companion. It knows the course from the
//! files themselves (the step folders, each step's `tests/exercises.rs`,
//! `solutions/`), keeps what the learner did in `progress/`, and runs
//! nothing but cargo and, for `reset` and `solution`, git.
//!
//! Each command is a module of `commands/` with its `Args` and its `run`;
//! a new one is that module and a line in `Command`.

mod checks;
mod class;
mod commands;
mod course;
mod disk;
mod error;
mod git;
mod hints;
mod ports;
mod progress;
mod saved;
mod terminal;
mod traffic;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{
    check, class as class_view, diff, doctor, hint, init, join, leave, reset, solution, status,
};
use course::Course;

/// The workshop's companion: where you are, what to do next, and the tools
/// to do it. Without a command, it shows your progress.
#[derive(Parser)]
#[command(name = "cargo workshop", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run an exercise's check and show its hint if it fails
    Check(check::Args),
    /// The next hint for an exercise, one level at a time
    Hint(hint::Args),
    /// The reference solution of an exercise (`--apply` to use it)
    Solution(solution::Args),
    /// Put a step back as it was shipped, saving your changes as a patch and
    /// clearing its checks' results
    Reset(reset::Args),
    /// The lesson: what a step changes in src/, in the README's order
    Diff(diff::Args),
    /// Is this laptop ready for the workshop? Run it before the day
    Doctor(doctor::Args),
    /// Steady traffic through the running step, and what it knows beside it, live
    Traffic(commands::traffic::Args),
    /// A copy without git (a zip download): record it as shipped
    Init(init::Args),
    /// For the instructor: a live page of the class, who is where and who is stuck
    Class(class_view::Args),
    /// Send each check's result to the instructor's class (and nothing else)
    Join(join::Args),
    /// Stop sending check results to the class
    Leave,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ran = Course::find().and_then(|course| match cli.command {
        None => status::run(&course),
        Some(Command::Check(args)) => check::run(&course, args),
        Some(Command::Hint(args)) => hint::run(&course, args),
        Some(Command::Solution(args)) => solution::run(&course, args),
        Some(Command::Reset(args)) => reset::run(&course, args),
        Some(Command::Diff(args)) => diff::run(&course, args),
        Some(Command::Doctor(args)) => doctor::run(&course, args),
        Some(Command::Traffic(args)) => commands::traffic::run(&course, args),
        Some(Command::Init(args)) => init::run(&course, args),
        Some(Command::Class(args)) => class_view::run(&course, args),
        Some(Command::Join(args)) => join::run(&course, args),
        Some(Command::Leave) => leave::run(&course),
    });
    ran.unwrap_or_else(|error| {
        eprintln!("{}", terminal::Style::Failure.paint_err(&format!("error: {error}")));
        ExitCode::from(2)
    })
}
