//! Every `NN-name` folder is a step: a workspace member named `stepNN-name`,
//! numbered without gaps, laid out and documented like every other step.

use std::fs;
use std::path::{Path, PathBuf};

/// The sections of a step's README, in this order.
const README_SECTIONS: [&str; 6] =
    ["## Goal", "## Diagram", "## Run", "## Try it", "## What changed since", "## Exercises"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The step folders (`01-starter`, `02-connect`, …), sorted.
fn step_folders() -> Vec<String> {
    let mut steps: Vec<String> = fs::read_dir(workspace_root())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_step_name(name))
        .collect();
    steps.sort();
    assert!(!steps.is_empty(), "no step folders (NN-name) found in {}", workspace_root().display());
    steps
}

fn is_step_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 3 && bytes[0].is_ascii_digit() && bytes[1].is_ascii_digit() && bytes[2] == b'-'
}

/// The `members` of the root Cargo.toml, in the order they are listed.
fn workspace_members() -> Vec<String> {
    let manifest = read(&workspace_root().join("Cargo.toml"));
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("the root Cargo.toml has no `members = [...]` list");
    list.lines()
        .map(|line| line.split('#').next().unwrap().trim().trim_end_matches(',').trim_matches('"'))
        .filter(|member| !member.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn steps_are_numbered_from_01_without_gaps() {
    for (index, step) in step_folders().iter().enumerate() {
        let expected = format!("{:02}-", index + 1);
        assert!(
            step.starts_with(&expected),
            "step folder {step} should be numbered {expected}…: steps are numbered 01, 02, … \
             without gaps or repeats, in the order of the slides"
        );
    }
}

#[test]
fn every_step_is_a_workspace_member_in_order() {
    let members: Vec<String> =
        workspace_members().into_iter().filter(|member| is_step_name(member)).collect();
    assert_eq!(
        members,
        step_folders(),
        "the step members of the root Cargo.toml must be exactly the step folders, in order"
    );
}

#[test]
fn every_step_package_is_named_after_its_folder() {
    for step in step_folders() {
        let manifest = read(&workspace_root().join(&step).join("Cargo.toml"));
        let expected = format!("name = \"step{step}\"");
        assert!(
            manifest.lines().any(|line| line.trim() == expected),
            "{step}/Cargo.toml should say {expected}: a package name cannot start with a digit, \
             so step NN-name is package stepNN-name"
        );
    }
}

#[test]
fn every_step_has_the_same_layout() {
    for step in step_folders() {
        let folder = workspace_root().join(&step);
        for file in ["Cargo.toml", "README.md", "src/main.rs", "src/lib.rs"] {
            assert!(folder.join(file).is_file(), "{step} has no {file}: every step has one");
        }
    }
}

/// Each test program links the whole step and its dependencies again: two
/// per step (its behaviour, and the exercises a learner runs by name), not
/// one per file, keep a learner's disk and `cargo test` light.
#[test]
fn every_step_has_two_test_programs_and_every_test_file_is_in_one() {
    for step in step_folders() {
        let tests = workspace_root().join(&step).join("tests");
        let mut programs: Vec<String> = fs::read_dir(&tests)
            .unwrap_or_else(|e| panic!("{step}/tests/: {e}"))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.to_string();
                match path.is_dir() {
                    true => path.join("main.rs").is_file().then(|| format!("{name}/main.rs")),
                    false => name.ends_with(".rs").then_some(name),
                }
            })
            .collect();
        programs.sort();
        assert_eq!(
            programs,
            ["behaviour/main.rs", "exercises.rs"],
            "{step}/tests/: a step has two test programs, behaviour/ (a module per file) and \
             exercises.rs; a new test file goes into behaviour/ and its main.rs"
        );
        let main = read(&tests.join("behaviour/main.rs"));
        for entry in fs::read_dir(tests.join("behaviour")).unwrap().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") else { continue };
            assert!(
                main.lines().any(|line| line.trim() == format!("mod {module};")),
                "{step}/tests/behaviour/{name} is not a module of main.rs (`mod {module};`), \
                 so none of its tests runs"
            );
        }
    }
}

/// The first line of the block .ci/unify-features writes.
const UNIFIED_FEATURES: &str = "# ---- The workspace's features";

#[test]
fn steps_do_not_depend_on_each_other_and_share_pinned_versions() {
    for step in step_folders() {
        let manifest = read(&workspace_root().join(&step).join("Cargo.toml"));
        // The block .ci/unify-features writes at the end names crates the step
        // does not use, with the features the workspace builds them with:
        // the check of that block is `.ci/unify-features --check`.
        let (own, _) = manifest.split_once(UNIFIED_FEATURES).unwrap_or((&manifest, ""));
        let mut section = String::new();
        for line in own.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if section.ends_with("dependencies]")
                && !line.is_empty()
                && !line.starts_with('#')
            {
                assert!(
                    !line.contains("path"),
                    "{step}/Cargo.toml: `{line}`: steps never depend on each other, so that one \
                     folder copied out of the workshop still builds"
                );
                assert!(
                    line.contains(".workspace = true") || line.contains("workspace = true"),
                    "{step}/Cargo.toml: `{line}`: pin the version once in the root Cargo.toml's \
                     [workspace.dependencies] and write `name.workspace = true` here"
                );
            }
        }
    }
}

#[test]
fn every_readme_has_the_sections_in_order() {
    for step in step_folders() {
        let readme = read(&workspace_root().join(&step).join("README.md"));
        let mut rest = readme.as_str();
        for section in README_SECTIONS {
            let Some(at) = rest.find(&format!("\n{section}")) else {
                panic!(
                    "{step}/README.md has no '{section}' section after the ones before it; a \
                     step's README has, in order: {}",
                    README_SECTIONS.join(", ")
                );
            };
            rest = &rest[at + 1 + section.len()..];
        }
        let run = format!("cargo run -p step{step}");
        assert!(readme.contains(&run), "{step}/README.md should show how to run it: `{run}`");
    }
}

#[test]
fn every_readme_shows_the_diff_with_the_step_before() {
    let steps = step_folders();
    for pair in steps.windows(2) {
        let (before, step) = (&pair[0], &pair[1]);
        let diff = format!("git diff --no-index {before} {step}");
        let readme = read(&workspace_root().join(step).join("README.md"));
        assert!(readme.contains(&diff), "{step}/README.md should show the diff command: `{diff}`");
    }
}

#[test]
fn the_root_readme_lists_every_step() {
    let readme = read(&workspace_root().join("README.md"));
    for step in step_folders() {
        assert!(
            readme.contains(&format!("[{step}]({step}/)")),
            "README.md should link the step in its table: [{step}]({step}/)"
        );
    }
}

/// The numbers of a step's exercise checks: the tests `exercise_<N>_…` of
/// its `tests/exercises.rs`.
fn exercise_numbers(step: &str) -> Vec<u32> {
    let path = workspace_root().join(step).join("tests/exercises.rs");
    let checks = read(&path);
    let mut numbers: Vec<u32> = checks
        .split("fn exercise_")
        .skip(1)
        .filter_map(|rest| rest.split('_').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

#[test]
fn every_step_has_checked_exercises_with_solutions() {
    for step in step_folders() {
        let numbers = exercise_numbers(&step);
        assert!(
            numbers.len() >= 2,
            "{step}/tests/exercises.rs has {} exercise checks: every step has at least two \
             (`async fn exercise_<N>_<what>`, #[ignore]d)",
            numbers.len()
        );
        let checks = read(&workspace_root().join(&step).join("tests/exercises.rs"));
        assert_eq!(
            checks.matches("#[ignore").count(),
            numbers.len(),
            "{step}/tests/exercises.rs: every exercise check is #[ignore]d, so that `cargo test \
             --workspace` does not run it before the learner has done the exercise"
        );
        let readme = read(&workspace_root().join(&step).join("README.md"));
        let exercises = readme.split("\n## Exercises").nth(1).unwrap_or_default();
        let solutions = workspace_root().join("solutions").join(&step);
        assert!(
            solutions.join("README.md").is_file(),
            "solutions/{step}/README.md is missing: it explains each solution to an instructor"
        );
        for number in numbers {
            let short =
                format!("cargo workshop check {} {number}", step[..2].trim_start_matches('0'));
            assert!(
                exercises.contains(&short),
                "{step}/README.md's Exercises should give the check of exercise {number} as the \
                 companion runs it, first: `{short}`"
            );
            let command =
                format!("cargo test -p step{step} --test exercises -- --ignored exercise_{number}");
            assert!(
                exercises.contains(&command),
                "{step}/README.md's Exercises should name the check of exercise {number}: `{command}`"
            );
            let patch = solutions.join(format!("{number}.patch"));
            assert!(
                patch.is_file(),
                "{step}: exercise {number} has no solutions/{step}/{number}.patch"
            );
        }
    }
}

#[test]
fn no_exercise_code_is_in_a_step_s_src() {
    for step in step_folders() {
        for entry in fs::read_dir(workspace_root().join(&step).join("src")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension() == Some("rs".as_ref()) {
                assert!(
                    !read(&path).contains("exercise_"),
                    "{}: exercise code lives in tests/exercises.rs and solutions/, never in src/, \
                     so that the diff between two steps shows only the lesson",
                    path.display()
                );
            }
        }
    }
}

/// The names of a step's exercise checks, `exercise_<N>_<what>`.
fn exercise_checks(step: &str) -> Vec<String> {
    let checks = read(&workspace_root().join(step).join("tests/exercises.rs"));
    checks
        .split("fn exercise_")
        .skip(1)
        .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap())
        .map(|name| format!("exercise_{name}"))
        .collect()
}

/// `cargo workshop hint` reads the hints after a check's own message from
/// solutions/<step>/hints.md: a `## <check>` section per exercise, with a
/// `### ` heading per hint (where to look, then the approach).
#[test]
fn every_exercise_check_has_its_hints_and_every_hint_its_check() {
    for step in step_folders() {
        let path = workspace_root().join("solutions").join(&step).join("hints.md");
        assert!(
            path.is_file(),
            "solutions/{step}/hints.md is missing: `cargo workshop hint` reads each exercise's \
             hints after its check's own message there (CONTRIBUTING.md, Exercises)"
        );
        let hints = read(&path);
        let sections: Vec<(&str, usize)> = hints
            .split("\n## ")
            .skip(1)
            .map(|section| {
                let check = section.lines().next().unwrap_or_default().trim();
                (check, section.matches("\n### ").count())
            })
            .collect();
        let checks = exercise_checks(&step);
        for check in &checks {
            let found = sections.iter().find(|(name, _)| name == check);
            let Some((_, levels)) = found else {
                panic!("solutions/{step}/hints.md has no section `## {check}` for its check")
            };
            assert!(
                *levels >= 2,
                "solutions/{step}/hints.md: `## {check}` has {levels} hints (`### ` headings): \
                 it needs two, where to look and then the approach"
            );
        }
        for (name, _) in &sections {
            assert!(
                checks.iter().any(|check| check == name),
                "solutions/{step}/hints.md has hints for `{name}`, which is no check of \
                 {step}/tests/exercises.rs (renamed? its checks: {checks:?})"
            );
        }
    }
}

/// A check's message is the first hint: what a client still sees wrong.
/// Where in the code to look is the second, in hints.md, read on request.
#[test]
fn a_check_s_message_does_not_give_the_code_away() {
    for step in step_folders() {
        let checks = read(&workspace_root().join(&step).join("tests/exercises.rs"));
        assert!(
            !checks.contains("Hint:"),
            "{step}/tests/exercises.rs: a check's message says what a client still sees wrong; \
             where to look and how go to solutions/{step}/hints.md, for `cargo workshop hint`"
        );
    }
}
