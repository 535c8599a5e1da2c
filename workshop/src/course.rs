//! The course as the files say it is: the steps are the `NN-name` folders
//! at the workspace's root, and a step's exercises are the checks
//! `exercise_<N>_<name>` of its `tests/exercises.rs`. Nothing else lists
//! them, so a new exercise is known as soon as its check exists.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct Course {
    /// The workspace's root folder.
    pub root: PathBuf,
    pub steps: Vec<Step>,
}

pub struct Step {
    /// The step's folder, `07-circuit-breaker`.
    pub folder: String,
    pub number: u32,
    pub exercises: Vec<Exercise>,
}

pub struct Exercise {
    pub number: u32,
    /// What its check is named after the number: `a_success_rate_over_a_window`.
    pub name: String,
}

impl Course {
    /// The course of the workspace this is run in (from any folder in it).
    pub fn find() -> Result<Course> {
        let here =
            std::env::current_dir().map_err(|error| crate::error::io("this folder", error))?;
        let root = here.ancestors().find(|folder| is_workspace_root(folder)).ok_or_else(|| {
            Error::new(format!(
                "{} is not in the workshop's folder: run `cargo workshop` in the folder you \
                 cloned (or unzipped), or in any folder under it",
                here.display()
            ))
        })?;
        Course::at(root)
    }

    pub fn at(root: &Path) -> Result<Course> {
        let entries =
            fs::read_dir(root).map_err(|error| crate::error::io(root.display(), error))?;
        let mut folders: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| {
                step_number(name).is_some() && root.join(name).join("Cargo.toml").is_file()
            })
            .collect();
        folders.sort();
        let steps = folders
            .into_iter()
            .map(|folder| {
                let checks = fs::read_to_string(root.join(&folder).join("tests/exercises.rs"));
                let exercises = exercises_in(&checks.unwrap_or_default());
                Step { number: step_number(&folder).unwrap_or_default(), folder, exercises }
            })
            .collect();
        Ok(Course { root: root.to_path_buf(), steps })
    }

    /// The step a learner names: `7`, `07` or `07-circuit-breaker`.
    pub fn step(&self, named: &str) -> Result<&Step> {
        let number = named.parse::<u32>().ok();
        let found =
            self.steps.iter().find(|step| step.folder == named || Some(step.number) == number);
        found.ok_or_else(|| {
            let steps: Vec<&str> = self.steps.iter().map(|step| step.folder.as_str()).collect();
            Error::new(format!(
                "there is no step `{named}`. The steps are: {}. Name one by its number (7 or 07) \
                 or its folder",
                steps.join(", ")
            ))
        })
    }

    /// The step before `step`, whose code `step` starts from.
    pub fn step_before(&self, step: &Step) -> Option<&Step> {
        let at = self.steps.iter().position(|other| other.folder == step.folder)?;
        at.checked_sub(1).map(|before| &self.steps[before])
    }

    pub fn has_git(&self) -> bool {
        self.root.join(".git").exists()
    }
}

impl Step {
    /// The package cargo knows the step by: `step07-circuit-breaker`.
    pub fn package(&self) -> String {
        format!("step{}", self.folder)
    }

    /// The exercise a learner names by its number.
    pub fn exercise(&self, named: &str) -> Result<&Exercise> {
        let number = named.parse::<u32>().ok();
        let found = self.exercises.iter().find(|exercise| Some(exercise.number) == number);
        found.ok_or_else(|| {
            let listed: Vec<String> = self.exercises.iter().map(Exercise::label).collect();
            Error::new(format!(
                "{} has no exercise `{named}`; its exercises with a check are: {}",
                self.folder,
                listed.join("; ")
            ))
        })
    }
}

impl Exercise {
    /// The check's test function: `exercise_2_a_success_rate_over_a_window`.
    pub fn test(&self) -> String {
        format!("exercise_{}_{}", self.number, self.name)
    }

    /// `2 (a success rate over a window)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.number, self.title())
    }

    pub fn title(&self) -> String {
        self.name.replace('_', " ")
    }
}

fn is_workspace_root(folder: &Path) -> bool {
    let manifest = fs::read_to_string(folder.join("Cargo.toml")).unwrap_or_default();
    manifest.lines().any(|line| line.trim() == "[workspace]") && folder.join("workshop").is_dir()
}

/// `07` of `07-circuit-breaker`; None for a folder that is not a step.
fn step_number(folder: &str) -> Option<u32> {
    let (number, name) = folder.split_once('-')?;
    let is_step = number.len() == 2 && !name.is_empty();
    is_step.then(|| number.parse().ok()).flatten()
}

/// The exercises whose checks a tests/exercises.rs defines, by number.
pub fn exercises_in(checks: &str) -> Vec<Exercise> {
    let mut exercises: Vec<Exercise> = checks
        .split("fn exercise_")
        .skip(1)
        .filter_map(|rest| {
            let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            let (number, name) = rest[..name_end].split_once('_')?;
            Some(Exercise { number: number.parse().ok()?, name: name.to_string() })
        })
        .filter(|exercise| !exercise.name.is_empty())
        .collect();
    exercises.sort_by_key(|exercise| exercise.number);
    exercises
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exercises_are_read_from_the_names_of_their_checks() {
        let checks = "async fn exercise_2_b_thing() {}\nfn helper() {}\nasync fn exercise_1_a() {";
        let found: Vec<String> = exercises_in(checks).iter().map(Exercise::test).collect();
        assert_eq!(found, ["exercise_1_a", "exercise_2_b_thing"]);
    }

    #[test]
    fn a_step_folder_has_two_digits_a_dash_and_a_name() {
        assert_eq!(step_number("07-circuit-breaker"), Some(7));
        assert_eq!(step_number("workshop"), None);
        assert_eq!(step_number("7-x"), None);
        assert_eq!(step_number("07-"), None);
    }
}
