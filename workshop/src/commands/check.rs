//! `cargo workshop check [STEP [N]] [--watch]`: runs an exercise's check,
//! shows what it says when it fails (hint 1), and records how it went.

use std::process::ExitCode;

use crate::checks::{self, Ran, Verdict};
use crate::class;
use crate::course::{Course, Exercise, Step};
use crate::error::{Error, Result};
use crate::progress::{Outcome, Progress};
use crate::terminal::{self, Style};
use crate::watch::Watcher;

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker. Left out: the exercise to do next
    step: Option<String>,
    /// The exercise's number. Left out: every exercise of the step
    exercise: Option<String>,
    /// Check again each time a file of the step is saved (Ctrl-C to stop)
    #[arg(long)]
    watch: bool,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    loop {
        let (step, exercises) = target(course, &args)?;
        // Looked at before the check runs: a save during a long build counts.
        let mut watcher = args.watch.then(|| Watcher::new(&course.root.join(&step.folder)));
        let passed = check(course, step, &exercises)?;
        let Some(watcher) = watcher.as_mut() else {
            return Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        };
        let watching = format!("Watching {}/ for saves (Ctrl-C to stop)", step.folder);
        println!("\n{}", Style::Dim.paint(&watching));
        watcher.wait_for_save();
        println!();
    }
}

/// The step and exercises to check: as named, or the next one to do
/// (looked for again at each run of --watch: once it passes, the next).
fn target<'c>(course: &'c Course, args: &Args) -> Result<(&'c Step, Vec<&'c Exercise>)> {
    let Some(step) = &args.step else {
        let progress = Progress::load(course);
        let (step, exercise) = progress.next(course).ok_or_else(|| {
            Error::new("every exercise's check passes: there is nothing left to check. Well done!")
        })?;
        return Ok((step, vec![exercise]));
    };
    let step = course.step(step)?;
    match &args.exercise {
        Some(number) => Ok((step, vec![step.exercise(number)?])),
        None if step.exercises.is_empty() => {
            Err(Error::new(format!("{} has no exercise with a check", step.folder)))
        }
        None => Ok((step, step.exercises.iter().collect())),
    }
}

/// Runs the checks, shows and records how they went; true if all passed.
fn check(course: &Course, step: &Step, exercises: &[&Exercise]) -> Result<bool> {
    let which = match exercises {
        [exercise] => format!("exercise {}", exercise.label()),
        _ => "every exercise".to_string(),
    };
    println!("{}", Style::Dim.paint(&format!("Checking {} {which}...", step.folder)));
    let ran = checks::run(step, exercises)?;
    let mut progress = Progress::load(course);
    let all_passed = match ran {
        Ran::DoesNotBuild(error) => does_not_build(&mut progress, step, exercises, &error),
        Ran::Checked(results) => checked(&mut progress, step, exercises, &results),
    };
    progress.save()?;
    class::report_checks(course, &progress, step, exercises);
    if all_passed {
        match progress.next(course) {
            Some((step, exercise)) => {
                let command = format!("cargo workshop check {} {}", step.number, exercise.number);
                let next = format!("exercise {} of {}", exercise.label(), step.folder);
                println!("Next: {next}: {}", Style::Bold.paint(&command));
            }
            None => println!("Every exercise's check passes. Well done!"),
        }
    }
    Ok(all_passed)
}

/// The step did not compile: every check it was to run fails, with the
/// compiler's first error as what it says.
fn does_not_build(
    progress: &mut Progress,
    step: &Step,
    exercises: &[&Exercise],
    error: &str,
) -> bool {
    let title = format!("{} does not build:", step.folder);
    println!("\n{}\n\n{error}\n", Style::Failure.paint(&title));
    let first = error.lines().next().unwrap_or_default();
    for exercise in exercises {
        let hint = Some(format!("does not build: {first}"));
        progress.checked(step, exercise, Outcome::Failed, hint);
    }
    false
}

/// Shows and records each check's verdict; true if all passed.
fn checked(
    progress: &mut Progress,
    step: &Step,
    exercises: &[&Exercise],
    results: &[(String, Verdict)],
) -> bool {
    let mut all_passed = true;
    for exercise in exercises {
        let verdict = results.iter().find(|(test, _)| *test == exercise.test());
        let Some((_, verdict)) = verdict else {
            let missing = format!("the check {} did not run", exercise.test());
            println!("{}: {}", step.folder, Style::Warning.paint(&missing));
            all_passed = false;
            continue;
        };
        show(step, exercise, verdict);
        let (outcome, hint) = match verdict {
            Verdict::Passed => (Outcome::Passed, None),
            Verdict::Failed { message, .. } => {
                all_passed = false;
                (Outcome::Failed, message.lines().next().map(str::to_string))
            }
        };
        progress.checked(step, exercise, outcome, hint);
    }
    all_passed
}

fn show(step: &Step, exercise: &Exercise, verdict: &Verdict) {
    let name = format!("{} exercise {}", step.folder, exercise.label());
    match verdict {
        Verdict::Passed => println!("{name}: {}", Style::Success.paint("done")),
        Verdict::Failed { message, location } => {
            println!("{name}: {}\n", Style::Failure.paint("not yet"));
            println!("{}", terminal::wrap(message, "  ", 78));
            if let Some(location) = location {
                println!("{}", Style::Dim.paint(&format!("  (the check that failed: {location})")));
            }
            let more = format!("cargo workshop hint {} {}", step.number, exercise.number);
            println!("  More help: {}\n", Style::Bold.paint(&more));
        }
    }
}
