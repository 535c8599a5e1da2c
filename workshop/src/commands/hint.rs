//! `cargo workshop hint STEP N`: the next hint for an exercise, without
//! building anything. Hint 1 is what its check says when it fails; each
//! time this is asked, the one after (where to look, then nearly the
//! approach), remembered per exercise.

use std::process::ExitCode;

use crate::course::{Course, Step};
use crate::error::{Error, Result};
use crate::hints;
use crate::progress::Progress;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    step: String,
    /// The exercise's number
    exercise: String,
    /// Show this hint again (1 is the check's own failure message) instead of the next
    #[arg(long)]
    level: Option<u8>,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let step = course.step(&args.step)?;
    if let Some(number) = args.exercise.parse().ok().filter(|&number| step.is_discussion(number)) {
        discussion(step, number);
        return Ok(ExitCode::SUCCESS);
    }
    let exercise = step.exercise(&args.exercise)?;
    let more = hints::beyond_the_check(course, step, exercise);
    let mut progress = Progress::load(course);
    let record = progress.record(step, exercise);
    let last = 1 + more.len() as u8;
    let name = format!("{} exercise {}", step.folder, exercise.label());
    let level = match args.level {
        Some(level) => asked(level, last, &name)?,
        None => (record.hints_seen.max(1) + 1).min(last),
    };
    let check = format!("cargo workshop check {} {}", step.number, exercise.number);

    if level == 1 {
        let title = format!("Hint 1 of {last}, {name}: its check's own failure message");
        println!("{}\n", Style::Bold.paint(&title));
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
        true => println!(
            "Still stuck? Hint {}: cargo workshop hint {} {} --level {0}",
            level + 1,
            step.number,
            exercise.number
        ),
        false => println!(
            "That was the last hint. The reference solution, for after you tried: \
             cargo workshop solution {} {}",
            step.number, exercise.number
        ),
    }
    let first = format!("(Hint 1 is its check's own failure message: {check})");
    println!("{}", Style::Dim.paint(&first));
    progress.hint_read(step, exercise, level);
    progress.save()?;
    Ok(ExitCode::SUCCESS)
}

/// The hint asked for with `--level`, if there is one: an error that
/// names the levels there are otherwise.
fn asked(level: u8, last: u8, name: &str) -> Result<u8> {
    if (1..=last).contains(&level) {
        return Ok(level);
    }
    let levels = match last {
        1 => "only 1".to_string(),
        _ => format!("1 to {last}"),
    };
    Err(Error::new(format!(
        "{name} has no hint {level}: its hints are {levels}, and 1 is its check's own failure \
         message. Leave out --level for the next one"
    )))
}

/// A discussion exercise has no check, so nothing to give hints about.
fn discussion(step: &Step, number: u32) {
    let said = format!(
        "{}'s exercise {number} is a discussion (its README, \"Exercises\"): there is no check \
         to run for it, and no hints. Try what it says, and talk it over with your neighbours \
         or the instructor.",
        step.folder
    );
    print!("{}", terminal::wrap(&said, "", 78));
}
