//! `cargo workshop diff STEP`: the lesson. What the step changes in src/
//! since the step before, file by file in the order its README's "What
//! changed" section reads them, coloured and paged on a terminal. Computed
//! here, so that it needs no git.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

use similar::TextDiff;

use crate::commands::solution::colour_patch_line;
use crate::course::Course;
use crate::error::Result;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    step: String,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let step = course.step(&args.step)?;
    let before = course.step_before(step);
    let new_src = course.root.join(&step.folder).join("src");
    let old_src = before.map(|before| course.root.join(&before.folder).join("src"));
    let readme =
        fs::read_to_string(course.root.join(&step.folder).join("README.md")).unwrap_or_default();

    let mut files = BTreeSet::new();
    source_files(&new_src, "", &mut files);
    if let Some(old_src) = &old_src {
        source_files(old_src, "", &mut files);
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
    let mut changed = 0;
    for file in reading_order(&readme, files) {
        let read = |src: &Path| fs::read_to_string(src.join(&file)).unwrap_or_default();
        let old = old_src.as_deref().map(read).unwrap_or_default();
        let new = read(&new_src);
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
