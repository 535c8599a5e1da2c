//! `cargo workshop hint STEP N`: the next hint for an exercise, without
//! building anything. Hint 1 is what its check says when it fails; each
//! time this is asked, the one after (where to look, then nearly the
//! approach), remembered per exercise.

use std::process::ExitCode;

use crate::course::Course;
use crate::error::Result;
use crate::hints;
use crate::progress::Progress;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    step: String,
    /// The exercise's number
    exercise: String,
    /// Show this hint again (1 is the check's message) instead of the next
    #[arg(long)]
    level: Option<u8>,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let step = course.step(&args.step)?;
    let exercise = step.exercise(&args.exercise)?;
    let more = hints::beyond_the_check(course, step, exercise);
    let mut progress = Progress::load(course);
    let record = progress.record(step, exercise);
    let last = 1 + more.len() as u8;
    let level = args.level.unwrap_or(record.hints_seen.max(1) + 1).clamp(1, last);
    let name = format!("{} exercise {}", step.folder, exercise.label());
    let check = format!("cargo workshop check {} {}", step.number, exercise.number);

    if level == 1 {
        println!(
            "{}\n",
            Style::Bold.paint(&format!("Hint 1 of {last}, {name}: what the check says"))
        );
        match record.last_check.and_then(|check| check.hint) {
            Some(said) => {
                println!("{}\n(its whole message: {check})", terminal::wrap(&said, "  ", 78))
            }
            None => println!("Run its check, which says what a client still sees wrong: {check}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hint = &more[usize::from(level) - 2];
    println!("{}\n", Style::Bold.paint(&format!("Hint {level} of {last}, {name}: {}", hint.title)));
    println!("{}", terminal::wrap(&hint.text, "  ", 78));
    match level < last {
        true => println!("Still stuck? Ask again for hint {}: the same command.", level + 1),
        false => println!(
            "That was the last hint. The reference solution, for after you tried: \
             cargo workshop solution {} {}",
            step.number, exercise.number
        ),
    }
    progress.hint_read(step, exercise, level);
    progress.save()?;
    Ok(ExitCode::SUCCESS)
}
