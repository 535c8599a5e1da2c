//! The class this copy of the workshop has joined: `progress/class.json`,
//! written by `cargo workshop join` and removed by `leave`. It sits with
//! the progress (git-ignored, the learner's own), and holds the exercises
//! whose latest check the class has not had yet, to go with the next one.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::report::{self, CheckReport, Report};
use crate::course::Course;
use crate::error::{self, Result};
use crate::progress::{self, Outcome, Progress};

const FILE: &str = "class.json";

#[derive(Serialize, Deserialize)]
pub struct Joined {
    /// The class's address, `http://192.168.1.20:3100`.
    pub url: String,
    pub name: String,
    /// The class code, as the instructor gave it.
    pub code: String,
    /// This copy's seat in the class, drawn at random: only this copy can
    /// write in its row, and joining again (another name) keeps the row.
    pub seat: String,
    /// Step folder and exercise name of the checks not sent yet.
    #[serde(default)]
    pub unsent: BTreeSet<(String, String)>,
}

impl Joined {
    /// The class this copy is in, if any. A file that cannot be read is as
    /// good as none: a check must never fail because of the class.
    pub fn load(course: &Course) -> Option<Joined> {
        let text = fs::read_to_string(path(course)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written whole or not at all, as the progress file is.
    pub fn save(&self, course: &Course) -> Result<()> {
        let path = path(course);
        let folder = course.root.join(progress::FOLDER);
        fs::create_dir_all(&folder).map_err(|error| error::io(folder.display(), error))?;
        let text = serde_json::to_string_pretty(self).expect("plain data");
        let temporary = path.with_extension("json.new");
        fs::write(&temporary, text + "\n")
            .map_err(|error| error::io(temporary.display(), error))?;
        fs::rename(&temporary, &path).map_err(|error| error::io(path.display(), error))
    }

    pub fn remove(course: &Course) -> Result<()> {
        let path = path(course);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error::io(path.display(), error))
            }
            _ => Ok(()),
        }
    }

    /// What goes to the class: the name, and the latest check of each
    /// exercise in `exercises` that has one.
    pub fn report<'a>(
        &self,
        course: &Course,
        progress: &Progress,
        exercises: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Report {
        let now = SystemTime::now();
        let checks = exercises.filter_map(|(folder, name)| {
            let step = course.steps.iter().find(|step| step.folder == folder)?;
            let exercise = step.exercises.iter().find(|exercise| exercise.name == name)?;
            let check = progress.record(step, exercise).last_check?;
            let at = humantime::parse_rfc3339_weak(&check.at).ok()?;
            let hint = match check.outcome {
                Outcome::Failed => check.hint.as_deref().map(report::tidy_hint),
                Outcome::Passed => None,
            };
            Some(CheckReport {
                step: step.folder.clone(),
                exercise: exercise.name.clone(),
                outcome: check.outcome,
                hint,
                seconds_ago: now.duration_since(at).unwrap_or_default().as_secs(),
            })
        });
        // The most recent first, should a course ever have more than fit.
        let mut checks: Vec<CheckReport> = checks.collect();
        checks.sort_by_key(|check| check.seconds_ago);
        checks.truncate(report::CHECKS_PER_REPORT);
        Report { name: self.name.clone(), checks }
    }
}

fn path(course: &Course) -> PathBuf {
    course.root.join(progress::FOLDER).join(FILE)
}

/// For `cargo workshop`: the class this copy is in, if any.
pub fn describe_membership(course: &Course) -> Option<String> {
    let joined = Joined::load(course)?;
    let unsent = match joined.unsent.len() {
        0 => String::new(),
        1 => ", 1 result to send with your next check".to_string(),
        n => format!(", {n} results to send with your next check"),
    };
    Some(format!(
        "In the class at {} as {}{unsent}: each check's result goes there \
         (cargo workshop leave to stop)",
        joined.url, joined.name
    ))
}
