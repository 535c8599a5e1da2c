//! What the learner has done, kept between runs in `progress/progress.json`
//! at the workspace's root: outside target/, so that `cargo clean` keeps
//! it, and git-ignored, so that it is nobody else's business.
//!
//! Entries are keyed by step folder and exercise name, never by position:
//! an update of the course that renames or removes an exercise leaves an
//! entry nothing knows, which is dropped on the next load. A file that
//! cannot be read is set aside, with a warning, and the learner starts a
//! fresh one: losing a record of checks is better than a companion that
//! will not start.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::course::{Course, Exercise, Step};
use crate::error::{self, Result};
use crate::terminal::Style;

/// The folder, at the workspace's root, that holds the progress file and
/// the work `reset` saves.
pub const FOLDER: &str = "progress";
const FILE: &str = "progress.json";
/// The file's format; a file of another version is set aside.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Progress {
    version: u32,
    /// Step folder -> exercise name -> what happened.
    #[serde(default)]
    steps: BTreeMap<String, BTreeMap<String, Record>>,
    /// When `cargo workshop doctor` last found this laptop ready, if its
    /// last run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    doctor_passed: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

/// What happened to one exercise.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Record {
    /// How its last check went, if it was ever run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<Check>,
    /// The highest hint level the learner has read (`cargo workshop hint`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hints_seen: u8,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Check {
    pub outcome: Outcome,
    /// When, as RFC 3339 (UTC).
    pub at: String,
    /// A failed check's first line: what a client still sees wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
}

fn is_zero(level: &u8) -> bool {
    *level == 0
}

impl Progress {
    /// The learner's progress in `course`, without entries for exercises
    /// the course no longer has.
    pub fn load(course: &Course) -> Progress {
        let path = course.root.join(FOLDER).join(FILE);
        let mut progress = match fs::read_to_string(&path) {
            Ok(text) => Progress::parse(&text).unwrap_or_else(|why| set_aside(&path, &why)),
            Err(_) => Progress::empty(),
        };
        progress.path = path;
        progress.drop_unknown(course);
        progress
    }

    fn parse(text: &str) -> std::result::Result<Progress, String> {
        let progress: Progress = serde_json::from_str(text).map_err(|error| error.to_string())?;
        match progress.version {
            VERSION => Ok(progress),
            other => Err(format!("it is of version {other}, and this companion reads {VERSION}")),
        }
    }

    fn empty() -> Progress {
        Progress {
            version: VERSION,
            steps: BTreeMap::new(),
            doctor_passed: None,
            path: PathBuf::new(),
        }
    }

    fn drop_unknown(&mut self, course: &Course) {
        self.steps.retain(|folder, exercises| {
            let Some(step) = course.steps.iter().find(|step| &step.folder == folder) else {
                return false;
            };
            exercises.retain(|name, _| step.exercises.iter().any(|known| &known.name == name));
            !exercises.is_empty()
        });
    }

    /// True until anything has been recorded of an exercise: a fresh clone
    /// (where `doctor` may have run already).
    pub fn is_new(&self) -> bool {
        self.steps.is_empty()
    }

    /// Notes how `doctor` found this laptop: a pass is remembered, so that
    /// nothing asks for it again; a failure forgets the pass before it.
    pub fn doctor_ran(&mut self, passed: bool) {
        self.doctor_passed =
            passed.then(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    }

    pub fn doctor_passed(&self) -> bool {
        self.doctor_passed.is_some()
    }

    /// The exercises before `step`'s `exercise`, in the course's order,
    /// whose check never ran: what "Next" would otherwise pass over.
    pub fn untried_before<'c>(
        &self,
        course: &'c Course,
        step: &Step,
        exercise: &Exercise,
    ) -> Vec<(&'c Step, &'c Exercise)> {
        let in_order = course.steps.iter().flat_map(|earlier_step| {
            earlier_step.exercises.iter().map(move |earlier| (earlier_step, earlier))
        });
        let before = in_order.take_while(|(earlier_step, earlier)| {
            earlier_step.folder != step.folder || earlier.number != exercise.number
        });
        let untried = |(earlier_step, earlier): &(&Step, &Exercise)| {
            self.record(earlier_step, earlier).last_check.is_none()
        };
        before.filter(untried).collect()
    }

    pub fn record(&self, step: &Step, exercise: &Exercise) -> Record {
        let exercises = self.steps.get(&step.folder);
        exercises.and_then(|records| records.get(&exercise.name)).cloned().unwrap_or_default()
    }

    fn record_mut(&mut self, step: &Step, exercise: &Exercise) -> &mut Record {
        let records = self.steps.entry(step.folder.clone()).or_default();
        records.entry(exercise.name.clone()).or_default()
    }

    /// The one exercise to do next: the first not yet passed in the step of
    /// the latest check, else in a step after it, else in one before; the
    /// first exercise of the course for a learner who has not started.
    pub fn next<'c>(&self, course: &'c Course) -> Option<(&'c Step, &'c Exercise)> {
        let latest = self.steps.iter().flat_map(|(folder, records)| {
            let checks = records.values().filter_map(|record| record.last_check.as_ref());
            checks.map(move |check| (check.at.as_str(), folder.as_str()))
        });
        let current = latest.max().map(|(_, folder)| folder);
        let at = course.steps.iter().position(|step| Some(step.folder.as_str()) == current);
        let (before, from) = course.steps.split_at(at.unwrap_or(0));
        let passed = |step: &Step, exercise: &Exercise| {
            let check = self.record(step, exercise).last_check;
            check.is_some_and(|check| check.outcome == Outcome::Passed)
        };
        from.iter().chain(before).find_map(|step| {
            let exercise = step.exercises.iter().find(|exercise| !passed(step, exercise))?;
            Some((step, exercise))
        })
    }

    /// Notes how a check went, now.
    pub fn checked(
        &mut self,
        step: &Step,
        exercise: &Exercise,
        outcome: Outcome,
        hint: Option<String>,
    ) {
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        self.record_mut(step, exercise).last_check = Some(Check { outcome, at, hint });
    }

    /// Notes that hint `level` was read.
    pub fn hint_read(&mut self, step: &Step, exercise: &Exercise, level: u8) {
        let record = self.record_mut(step, exercise);
        record.hints_seen = record.hints_seen.max(level);
    }

    /// Forgets the checks of `step` (its code is back as shipped); the hints
    /// read stay read.
    pub fn forget_checks(&mut self, step: &Step) {
        if let Some(records) = self.steps.get_mut(&step.folder) {
            records.values_mut().for_each(|record| record.last_check = None);
        }
    }

    /// Writes the file: to a temporary one first, then renamed over the old,
    /// so that a Ctrl-C in the middle never leaves half a file.
    pub fn save(&self) -> Result<()> {
        let folder = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(folder).map_err(|error| error::io(folder.display(), error))?;
        let text = serde_json::to_string_pretty(self).expect("progress is plain data");
        let temporary = self.path.with_extension("json.new");
        fs::write(&temporary, text + "\n")
            .map_err(|error| error::io(temporary.display(), error))?;
        fs::rename(&temporary, &self.path).map_err(|error| error::io(self.path.display(), error))
    }
}

impl Check {
    /// How long ago, in words: `3m ago`, `2h ago`, `5 days ago`.
    pub fn ago(&self) -> String {
        let at = humantime::parse_rfc3339_weak(&self.at).unwrap_or(SystemTime::now());
        let elapsed = SystemTime::now().duration_since(at).unwrap_or_default().as_secs();
        let rounded = match elapsed {
            0..60 => return "just now".to_string(),
            60..3600 => elapsed - elapsed % 60,
            3600..86400 => elapsed - elapsed % 3600,
            // In days: humantime would say a month is 30.44 of them.
            86400..172800 => return "1 day ago".to_string(),
            _ => return format!("{} days ago", elapsed / 86400),
        };
        format!("{} ago", humantime::format_duration(Duration::from_secs(rounded)))
    }
}

/// Moves an unreadable progress file out of the way, says so, and starts
/// afresh.
fn set_aside(path: &Path, why: &str) -> Progress {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "-");
    let aside = path.with_file_name(format!("progress-unreadable-{stamp}.json"));
    let moved = fs::rename(path, &aside);
    let warning = match moved {
        Ok(()) => format!(
            "warning: {} could not be read ({why}); it is kept as {} and a new one is started",
            path.display(),
            aside.display()
        ),
        Err(error) => format!(
            "warning: {} could not be read ({why}), nor moved aside ({error}); a new one is started",
            path.display()
        ),
    };
    eprintln!("{}", Style::Warning.paint_err(&warning));
    Progress::empty()
}
