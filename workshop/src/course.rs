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
    /// The numbers of its README's discussion exercises: no check, no hints.
    pub discussions: Vec<u32>,
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
                let readme = fs::read_to_string(root.join(&folder).join("README.md"));
                let discussions = discussions_in(&readme.unwrap_or_default());
                let number = step_number(&folder).unwrap_or_default();
                Step { number, folder, exercises, discussions }
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
            if number.is_some_and(|number| self.is_discussion(number)) {
                return Error::new(format!(
                    "{}'s exercise {named} is a discussion (README, \"Exercises\"): there is no \
                     check to run for it. Its exercises with a check are: {}",
                    self.folder,
                    listed.join("; ")
                ));
            }
            Error::new(format!(
                "{} has no exercise `{named}`; its exercises with a check are: {}",
                self.folder,
                listed.join("; ")
            ))
        })
    }
}

impl Step {
    /// True if exercise `number` of the README is one to talk over, not to
    /// code: it has no check.
    pub fn is_discussion(&self, number: u32) -> bool {
        self.discussions.contains(&number)
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

    /// The name in words. A name cannot hold an apostrophe, so a word such
    /// as `service2s` is read back as `service2's`.
    pub fn title(&self) -> String {
        let words = self.name.split('_').map(|word| match word.strip_suffix('s') {
            Some(owner) if owner.ends_with(|c: char| c.is_ascii_digit()) => format!("{owner}'s"),
            _ => word.to_string(),
        });
        words.collect::<Vec<_>>().join(" ")
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

/// The numbers of the discussion exercises in a README's "Exercises"
/// section: the items that start `N. (Discussion)`.
pub fn discussions_in(readme: &str) -> Vec<u32> {
    let section = readme.split("\n## Exercises").nth(1).unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    let items = section.lines().filter_map(|line| line.split_once(". (Discussion)"));
    items.filter_map(|(number, _)| number.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discussion_exercises_are_read_from_the_readme() {
        let readme = "## Run\n3. (Discussion) not here\n## Exercises\n\n1. Add a thing.\n\n\
                      3. (Discussion) Start it twice.\n4. (Discussion) Why?\n## Next\n5. (Discussion)\n";
        assert_eq!(discussions_in(readme), [3, 4]);
    }

    #[test]
    fn a_digit_then_s_in_a_name_is_a_possessive() {
        let exercise = Exercise { number: 1, name: "service1_wraps_service2s_answer".into() };
        assert_eq!(exercise.title(), "service1 wraps service2's answer");
        let exercise = Exercise { number: 2, name: "keep_one_trace_in_ten".into() };
        assert_eq!(exercise.title(), "keep one trace in ten");
    }

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
