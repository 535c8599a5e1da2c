//! `cargo workshop`: where you are. Every step with its exercises (done,
//! failing and since when, or not tried), then the one thing to do next,
//! with its command.

use std::process::ExitCode;

use crate::class;
use crate::course::{Course, Exercise, Step};
use crate::error::Result;
use crate::progress::{Outcome, Progress};
use crate::terminal::{self, Style};

pub fn run(course: &Course) -> Result<ExitCode> {
    let progress = Progress::load(course);
    if progress.is_new() {
        welcome(course, &progress);
        joined(course);
        return Ok(ExitCode::SUCCESS);
    }
    let width = course.steps.iter().flat_map(|step| &step.exercises);
    let width = width.map(|exercise| exercise.title().len() + 3).max().unwrap_or(0);
    for step in &course.steps {
        println!("{}", Style::Bold.paint(&step.folder));
        for exercise in &step.exercises {
            let record = progress.record(step, exercise);
            let state = match &record.last_check {
                None => Style::Dim.paint("not tried"),
                Some(check) if check.outcome == Outcome::Passed => {
                    format!("{}, {}", Style::Success.paint("done"), check.ago())
                }
                Some(check) => format!("{}, {}", Style::Failure.paint("failing"), check.ago()),
            };
            println!("  {:<width$} {state}", format!("{} {}", exercise.number, exercise.title()));
        }
    }
    println!();
    match progress.next(course) {
        Some((step, exercise)) => {
            let hint = progress.record(step, exercise).last_check.and_then(|check| check.hint);
            println!(
                "Next: {} exercise {} (its README's Exercises)",
                step.folder,
                exercise.label()
            );
            if let Some(hint) = hint {
                print!("{}", terminal::wrap(&format!("its check said: {hint}"), "  ", 78));
            }
            let command = format!("cargo workshop check {} {}", step.number, exercise.number);
            println!("  {}    (--watch: again on every save)", Style::Bold.paint(&command));
            if let Some(untried) = untried(&progress.untried_before(course, step, exercise)) {
                print!("{}", terminal::wrap(&untried, "", 78));
            }
        }
        None => println!("Every exercise's check passes. Well done!"),
    }
    joined(course);
    Ok(ExitCode::SUCCESS)
}

/// The class this copy sends its checks to, if it joined one.
fn joined(course: &Course) {
    if let Some(membership) = class::describe_membership(course) {
        print!("\n{}", Style::Dim.paint(&terminal::wrap(&membership, "", 78)));
    }
}

/// The exercises before "Next" that were never checked, in one line:
/// `Also untried, before it: 01 ex 2, 03 ex 1.` None if there are none.
fn untried(exercises: &[(&Step, &Exercise)]) -> Option<String> {
    const SHOWN: usize = 6;
    let named = exercises.iter().take(SHOWN);
    let mut named: Vec<String> = named
        .map(|(step, exercise)| format!("{:02} ex {}", step.number, exercise.number))
        .collect();
    if exercises.len() > SHOWN {
        named.push(format!("and {} more", exercises.len() - SHOWN));
    }
    (!named.is_empty()).then(|| format!("Also untried, before it: {}.", named.join(", ")))
}

/// A fresh clone: where to start, and what the companion does.
fn welcome(course: &Course, progress: &Progress) {
    let first = course.steps.first().map(|step| step.folder.as_str()).unwrap_or("01-starter");
    println!("{}", Style::Bold.paint("Welcome to the workshop."));
    // `cargo workshop` is `cargo run -q`: the first run builds this
    // companion without a word, which looks like a hang.
    let built = "(The first `cargo workshop` quietly builds this companion: a few minutes, \
                 once. From then on it starts at once.)";
    print!("{}", Style::Dim.paint(&terminal::wrap(built, "", 78)));
    println!("\nStart with {first}/README.md: run the step, try it, then do its exercises.");
    if !progress.doctor_passed() {
        println!("Before the workshop day, check that this laptop is ready: cargo workshop doctor");
    }
    println!(
        "\n\
         cargo workshop check 1 1    runs the check of step 01's exercise 1 (--watch: on every save)\n\
         cargo workshop hint 1 1     the next hint for it\n\
         cargo workshop diff 2       what step 02 adds, in reading order\n\
         cargo workshop reset 1      step 01 back as shipped (your work saved as a patch)\n\
         cargo workshop              where you are, and what to do next"
    );
    if !course.has_git() {
        let warning = "This copy has no git history (a zip download?), so `reset` and \
                       `solution` cannot know how the steps were shipped. Record it now, \
                       before you change anything: cargo workshop init";
        print!("\n{}", Style::Warning.paint(&terminal::wrap(warning, "", 78)));
    }
}
