//! `cargo workshop class`: the instructor's live view of the room. Serves a
//! page of every learner who joined against the course's exercises, kept up
//! to date by their checks (see `class/`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::class::{Server, ServerOptions};
use crate::course::Course;
use crate::error::Result;
use crate::progress;
use crate::terminal::Style;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on: 127.0.0.1 is this laptop only, 0.0.0.0 the room's network too
    #[arg(long, env = "CLASS_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on
    #[arg(long, env = "CLASS_PORT", default_value_t = 3100)]
    port: u16,
    /// A learner failing one exercise for longer than this stands out (10m, 90s)
    #[arg(long, env = "CLASS_STUCK_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    stuck_after: Duration,
    /// The file the class is kept in, so that a restart keeps it [default: progress/class-room.json]
    #[arg(long, env = "CLASS_STATE")]
    state: Option<PathBuf>,
    /// Start a new class (a new code, no one in it) instead of the one kept
    #[arg(long)]
    new: bool,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let state =
        args.state.unwrap_or_else(|| course.root.join(progress::FOLDER).join("class-room.json"));
    let options = ServerOptions {
        host: args.host,
        port: args.port,
        stuck_after: args.stuck_after,
        state: state.clone(),
        fresh: args.new,
    };
    let server = Server::open(course, options)?;
    let code = server.code();
    println!("{} {}", Style::Bold.paint("The class is open. Its page:"), server.page_url);
    println!("(open it on this laptop, and put it on the projector)\n");
    println!("  Class code: {}", Style::Bold.paint(&code));
    println!("  Learners join with:");
    println!(
        "    cargo workshop join {} --code {code} --name \"<their name>\"\n",
        server.learners_url
    );
    if server.local_only {
        let warning = "Only this laptop can reach the class: it listens on 127.0.0.1. For the \
                       room to join, start it with --host 0.0.0.0.";
        println!("{}", Style::Warning.paint(warning));
    }
    println!(
        "Learners send their name and, for each check, the step, the exercise, passed or not, \
         and the check's first line.\nThe class is kept in {}: started again, it carries on \
         with the same learners and code (--new: a new class).\nCtrl-C stops it.\n",
        state.display()
    );
    let stopped = server.run()?;
    println!("The class stopped. It is kept in {}.", state.display());
    Ok(stopped)
}
