//! `cargo workshop diff STEP`: the lesson. What the step changes in src/
//! since the step before, as shipped (the learner's own edits are not the
//! lesson), file by file in the order its README's "What changed" section
//! reads them, coloured and paged on a terminal. The files come from git's
//! last commit; a copy without git shows its folders as they are.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

use similar::TextDiff;

use crate::commands::solution::colour_patch_line;
use crate::course::Course;
use crate::error::Result;
use crate::git::Git;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    step: String,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let step = course.step(&args.step)?;
    let before = course.step_before(step);
    let source = Source::of(course);
    let readme =
        fs::read_to_string(course.root.join(&step.folder).join("README.md")).unwrap_or_default();
    let new_src = format!("{}/src", step.folder);
    let old_src = before.map(|before| format!("{}/src", before.folder));

    let mut files: BTreeSet<String> = source.files(&new_src).into_iter().collect();
    if let Some(old_src) = &old_src {
        files.extend(source.files(old_src));
    }
    let mut shown = match before {
        Some(before) => {
            format!("What {} adds to {}, in reading order:\n", step.folder, before.folder)
        }
        None => format!(
            "{} is the first step: all of it is the lesson, in reading order:\n",
            step.folder
        ),
    };
    let sides = [old_src.as_ref(), Some(&new_src)];
    let mut notes: Vec<String> =
        sides.into_iter().flatten().filter_map(|src| source.note(src)).collect();
    notes.dedup();
    for note in notes {
        shown.push_str(&Style::Dim.paint(&terminal::wrap(&note, "", 78)));
    }
    let mut changed = 0;
    for file in reading_order(&readme, files) {
        let old = old_src.as_ref().map(|src| source.read(src, &file)).unwrap_or_default();
        let new = source.read(&new_src, &file);
        if old == new {
            continue;
        }
        changed += 1;
        let what = match (old.is_empty(), new.is_empty()) {
            (true, _) => " (new)",
            (_, true) => " (removed)",
            _ => "",
        };
        let title = format!("{changed}. src/{file}{what}");
        shown.push_str(&format!("\n{}\n", Style::Bold.paint(&title)));
        let diff = TextDiff::from_lines(&old, &new);
        for line in diff.unified_diff().context_radius(3).to_string().lines() {
            shown.push_str(&colour_patch_line(line));
            shown.push('\n');
        }
    }
    if changed == 0 {
        shown.push_str("\nNothing: src/ is the same as the step before's.\n");
    }
    terminal::page(&shown);
    Ok(ExitCode::SUCCESS)
}

/// Where the steps' files are read from: the last commit, which is the
/// steps as shipped, whatever the learner changed since; the folders as
/// they are in a copy without git.
enum Source<'c> {
    Shipped(Git),
    AsTheyAre(&'c Course),
}

impl<'c> Source<'c> {
    fn of(course: &'c Course) -> Source<'c> {
        match Git::of(course) {
            Ok(git) => Source::Shipped(git),
            Err(_) => Source::AsTheyAre(course),
        }
    }

    /// The files under `src` (`07-circuit-breaker/src`), relative to it.
    fn files(&self, src: &str) -> Vec<String> {
        match self {
            Source::Shipped(git) => git.shipped_files(src).unwrap_or_default(),
            Source::AsTheyAre(course) => {
                let mut files = BTreeSet::new();
                source_files(&course.root.join(src), "", &mut files);
                files.into_iter().collect()
            }
        }
    }

    fn read(&self, src: &str, file: &str) -> String {
        match self {
            Source::Shipped(git) => git.shipped(&format!("{src}/{file}")),
            Source::AsTheyAre(course) => {
                fs::read_to_string(course.root.join(src).join(file)).unwrap_or_default()
            }
        }
    }

    /// One line to say that what the learner sees in `src` is not what the
    /// diff shows: their edits there, or a copy that cannot tell.
    fn note(&self, src: &str) -> Option<String> {
        match self {
            Source::Shipped(git) => git.is_edited(src).unwrap_or(false).then(|| {
                format!(
                    "Your edits in {src} are not in this diff, which is of the steps as \
                     shipped; `git status {src}` and `git diff {src}` show them."
                )
            }),
            Source::AsTheyAre(_) => Some(
                "This copy has no git history: the steps are shown as they are now, with any \
                 edits of yours (`cargo workshop init` records them as shipped)."
                    .to_string(),
            ),
        }
    }
}

/// The files under `folder`, as paths relative to src/ with `/`.
fn source_files(folder: &Path, prefix: &str, files: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            source_files(&entry.path(), &format!("{name}/"), files);
        } else {
            files.insert(name);
        }
    }
}

/// `files` in the order the README's "What changed" section names them
/// (`src/breaker.rs`, …), then the others by name.
fn reading_order(readme: &str, mut files: BTreeSet<String>) -> Vec<String> {
    let section = readme.split("\n## What changed").nth(1).unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut ordered = Vec::new();
    for span in section.split('`').skip(1).step_by(2) {
        if let Some(file) = span.strip_prefix("src/")
            && files.remove(file)
        {
            ordered.push(file.to_string());
        }
    }
    ordered.extend(files);
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_in_the_order_the_readme_names_them() {
        let readme = "## Run\n`src/lib.rs`\n## What changed since step 06\n\n1. `src/breaker.rs`, new\n\
                      2. `src/upstream.rs` and `tests/x.rs`\n\n## Exercises\n`src/main.rs`\n";
        let files = ["breaker.rs", "lib.rs", "main.rs", "upstream.rs"].map(String::from).into();
        assert_eq!(
            reading_order(readme, files),
            ["breaker.rs", "upstream.rs", "lib.rs", "main.rs"]
        );
    }
}
