//! `cargo workshop leave`: no more check results go to the class, and the
//! class forgets this learner.

use std::process::ExitCode;

use crate::class::{self, Joined, Sent};
use crate::course::Course;
use crate::error::Result;

pub fn run(course: &Course) -> Result<ExitCode> {
    let Some(joined) = Joined::load(course) else {
        println!("This copy is in no class: there is nothing to leave.");
        return Ok(ExitCode::SUCCESS);
    };
    let told = class::leave(&joined, class::LEAVE_DEADLINE);
    Joined::remove(course)?;
    println!("Left the class at {}: nothing more goes to it.", joined.url);
    match told {
        Sent::Taken => println!("Its page no longer shows you."),
        Sent::Refused { detail, .. } | Sent::Unanswered(detail) => println!(
            "The class did not hear of it ({detail}), so its page may show you until the \
             instructor starts a new one."
        ),
    }
    Ok(ExitCode::SUCCESS)
}
