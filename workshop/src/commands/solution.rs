//! `cargo workshop solution STEP N`: the reference solution of an exercise,
//! its note for instructors and its patch (coloured on a terminal).
//! `--apply` puts the step back as shipped, the learner's work saved as
//! `reset` saves it, and applies the patch.

use std::fs;
use std::process::ExitCode;

use crate::course::{Course, Exercise, Step};
use crate::error::{self, Result};
use crate::git::Git;
use crate::saved;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    step: String,
    /// The exercise's number
    exercise: String,
    /// Apply it to the step (your changes to the step are saved first)
    #[arg(long)]
    apply: bool,
    /// Do not ask first (needed with --apply where there is no terminal)
    #[arg(long)]
    yes: bool,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let step = course.step(&args.step)?;
    let exercise = step.exercise(&args.exercise)?;
    let folder = course.root.join("solutions").join(&step.folder);
    let patch_path = folder.join(format!("{}.patch", exercise.number));
    let patch =
        fs::read_to_string(&patch_path).map_err(|error| error::io(patch_path.display(), error))?;
    if args.apply {
        return apply(course, step, exercise, &patch_path, args.yes);
    }
    let notes = fs::read_to_string(folder.join("README.md")).unwrap_or_default();
    let mut shown = note(&notes, exercise.number);
    shown.push_str(&format!(
        "\n{}\n\n",
        Style::Bold.paint(&format!("solutions/{}/{}.patch:", step.folder, exercise.number))
    ));
    for line in patch.lines() {
        shown.push_str(&colour_patch_line(line));
        shown.push('\n');
    }
    let apply = format!("cargo workshop solution {} {} --apply", step.number, exercise.number);
    shown.push_str(&format!("\nTo use it (your changes to the step are saved first): {apply}\n"));
    terminal::page(&shown);
    Ok(ExitCode::SUCCESS)
}

fn apply(
    course: &Course,
    step: &Step,
    exercise: &Exercise,
    patch: &std::path::Path,
    yes: bool,
) -> Result<ExitCode> {
    let git = Git::of(course)?;
    let changed = saved::changed(&git, &[step])?;
    let question = match changed.is_empty() {
        true => {
            format!("Apply the reference solution of {} exercise {}?", step.folder, exercise.number)
        }
        false => format!(
            "Apply the reference solution of {} exercise {}? The step is put back as shipped \
             first, your changes ({}) saved as a patch.",
            step.folder,
            exercise.number,
            changed[0].files()
        ),
    };
    if !yes && !terminal::confirm(&question)? {
        println!("Nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    for saved_patch in saved::save_and_restore(course, &git, &changed)? {
        println!("Your changes are saved in {}", saved_patch.display());
        println!(
            "  To bring them back: {}",
            Style::Bold.paint(&saved::bring_back(course, &saved_patch))
        );
    }
    git.apply(patch)?;
    let check = format!("cargo workshop check {} {}", step.number, exercise.number);
    println!(
        "Applied the reference solution to {}. Check it: {}",
        step.folder,
        Style::Bold.paint(&check)
    );
    Ok(ExitCode::SUCCESS)
}

/// The section `## N. …` of a solutions README: what the solution does,
/// and what to present.
fn note(readme: &str, number: u32) -> String {
    let heading = format!("## {number}. ");
    let Some((_, rest)) = readme.split_once(&heading) else { return String::new() };
    let section = rest.split("\n## ").next().unwrap_or_default().trim_end();
    let (title, body) = section.split_once('\n').unwrap_or((section, ""));
    format!("{}\n{body}\n", Style::Bold.paint(&format!("{heading}{title}")))
}

/// A line of a patch in the colours of `git diff`.
pub fn colour_patch_line(line: &str) -> String {
    let style = match line.as_bytes().first() {
        _ if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") => {
            Style::Bold
        }
        Some(b'+') => Style::Added,
        Some(b'-') => Style::Removed,
        Some(b'@') => Style::Hunk,
        _ => return line.to_string(),
    };
    style.paint(line)
}
