//! `cargo workshop init`: a copy without git (a zip download) becomes a
//! git repository whose one commit is the workshop as shipped, so that
//! `reset` and `solution` have something to go back to.

use std::process::{Command, ExitCode};

use crate::course::Course;
use crate::error::{Error, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(course: &Course, _args: Args) -> Result<ExitCode> {
    if course.has_git() {
        println!("{} is a git repository already: nothing to record.", course.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    // An author of its own: a laptop without git's user settings can commit.
    let steps: [&[&str]; 3] = [
        &["init", "-q"],
        &["add", "--all"],
        &[
            "-c",
            "user.name=workshop",
            "-c",
            "user.email=workshop@localhost",
            "commit",
            "-q",
            "-m",
            "The workshop as shipped",
        ],
    ];
    for args in steps {
        let ran = Command::new("git").args(args).current_dir(&course.root).output().map_err(|error| {
            Error::new(format!(
                "cannot run git ({error}): install it (https://git-scm.com), then run this again"
            ))
        })?;
        if !ran.status.success() {
            let said = String::from_utf8_lossy(&ran.stderr);
            return Err(Error::new(format!("`git {}` failed: {}", args.join(" "), said.trim())));
        }
    }
    println!(
        "Recorded the workshop as shipped (a git repository with one commit): \
         `cargo workshop reset` and `solution` can now go back to it."
    );
    Ok(ExitCode::SUCCESS)
}
