//! A step's `src/platform/` is the frame its services stand on, which no
//! step teaches. It changes from one step to the next only where a pattern
//! plugs into it (step 08's `serve.rs` wraps every request in a span), and
//! then the step's README names the file in its "What changed" section, so
//! that a learner reading the lesson knows to look there. Anywhere else it
//! is the same, byte for byte, as the step before's: a fix to the frame
//! goes into every step.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The step folders (`01-starter`, …), in order.
fn step_folders() -> Vec<String> {
    let mut steps: Vec<String> = fs::read_dir(workspace_root())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let bytes = name.as_bytes();
            bytes.len() > 3 && bytes[..2].iter().all(u8::is_ascii_digit) && bytes[2] == b'-'
        })
        .collect();
    steps.sort();
    steps
}

/// The files of a step's `src/platform/`, by name, with their contents.
fn platform_files(step: &str) -> Vec<(String, String)> {
    let folder = workspace_root().join(step).join("src/platform");
    let Ok(entries) = fs::read_dir(&folder) else { return Vec::new() };
    let mut files: Vec<(String, String)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            Some((name, fs::read_to_string(&path).ok()?))
        })
        .collect();
    files.sort();
    files
}

/// The README's "What changed" section.
fn what_changed(step: &str) -> String {
    let readme = fs::read_to_string(workspace_root().join(step).join("README.md")).unwrap();
    let section = readme.split("\n## What changed").nth(1).unwrap_or_default();
    section.split("\n## ").next().unwrap_or_default().to_string()
}

#[test]
fn every_step_has_a_platform_folder() {
    for step in step_folders() {
        assert!(
            !platform_files(&step).is_empty(),
            "{step}/src/platform/ is missing: the frame every service stands on (running, \
             stopping, errors, the launcher) lives there, apart from the lesson"
        );
    }
}

#[test]
fn platform_files_change_only_where_the_readme_says() {
    let steps = step_folders();
    let mut unnamed = Vec::new();
    for pair in steps.windows(2) {
        let (before, step) = (&pair[0], &pair[1]);
        let (old, new) = (platform_files(before), platform_files(step));
        let section = what_changed(step);
        let mut names: Vec<&String> = old.iter().chain(&new).map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        for name in names {
            let text = |files: &[(String, String)]| {
                files.iter().find(|(file, _)| file == name).map(|(_, text)| text.clone())
            };
            if text(&old) == text(&new) {
                continue;
            }
            if !section.contains(&format!("platform/{name}")) {
                unnamed.push(format!("{step}/src/platform/{name} (changed since {before})"));
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "these files of the frame differ from the step before's, and their step's README does \
         not name them in its \"What changed\" section. Make the file the same as the step \
         before's (a fix to the frame goes into every step), or, where a pattern plugs into \
         it, say so in the README (`src/platform/<file>`):\n{}",
        unnamed.join("\n")
    );
}
