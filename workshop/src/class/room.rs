//! Who is in the class, and how each of their exercises stands. Kept in
//! memory and, after every change, in a file (a new file renamed over the
//! old, so that a crash leaves the old or the new, never half of one): a
//! restart of the instructor's laptop keeps the class and its code.
//!
//! Everything in it is bounded: at most [`MOST_LEARNERS`] learners, a
//! standing per exercise of the course, text cut to the limits of
//! `report.rs`; and what is kept of a learner goes when they leave.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::outline::Outline;
use super::report::{self, CODE_LENGTH, CODE_LETTERS, CheckReport, Report};
use crate::progress::Outcome;

/// Enough for a big room, and a bound on memory (300 learners: ~10 MB for
/// the whole server, bench/README.md). Beyond it, a new learner is refused
/// with a message that says so; those already in carry on.
pub const MOST_LEARNERS: usize = 400;
const VERSION: u32 = 1;
/// Reports from two laptops arrive out of order by a second or so.
const SAME_TIME: u64 = 2;

#[derive(Serialize, Deserialize)]
pub struct Room {
    version: u32,
    /// The class code, without its dash.
    code: String,
    /// By seat.
    learners: BTreeMap<String, Learner>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
pub struct Learner {
    pub name: String,
    /// Times are seconds since the Unix epoch, by the class's clock.
    pub joined_at: u64,
    /// Step folder -> exercise name -> how it stands.
    pub exercises: BTreeMap<String, BTreeMap<String, Standing>>,
}

#[derive(Serialize, Deserialize)]
pub struct Standing {
    pub outcome: Outcome,
    /// A failing check's first line.
    pub hint: Option<String>,
    /// When its latest check ran.
    pub checked_at: u64,
    /// Since when its checks have failed, with no pass in between.
    pub failing_since: Option<u64>,
}

/// Why a report changed nothing.
pub enum Refusal {
    /// A field out of bounds, or an exercise this course does not have.
    Invalid(String),
    NameTaken,
    Full,
}

/// What a report did to the room.
pub enum Arrival {
    Joined,
    Reported,
}

impl Room {
    /// The class kept at `path`, or a new one (with a new code) if there is
    /// none or `fresh` is asked for.
    pub fn open(path: &Path, outline: &Outline, fresh: bool) -> Result<Room, String> {
        let mut room = match fs::read_to_string(path) {
            Ok(text) if !fresh => Room::parse(&text).map_err(|why| {
                format!(
                    "{} cannot be read ({why}): move it away to keep it, or start a new class \
                     with --new",
                    path.display()
                )
            })?,
            _ => Room::new(),
        };
        room.path = path.to_path_buf();
        room.forget_unknown(outline);
        room.save().map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(room)
    }

    fn parse(text: &str) -> Result<Room, String> {
        let room: Room = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let code_is_ok = room.code.len() == CODE_LENGTH
            && room.code.bytes().all(|letter| CODE_LETTERS.contains(&letter));
        match (room.version, code_is_ok) {
            (VERSION, true) => Ok(room),
            (VERSION, false) => Err("its class code is not one this companion makes".into()),
            (other, _) => Err(format!("it is of version {other}; this companion reads {VERSION}")),
        }
    }

    fn new() -> Room {
        let mut random = rand::rng();
        let code = (0..CODE_LENGTH)
            .map(|_| char::from(CODE_LETTERS[random.random_range(0..CODE_LETTERS.len())]))
            .collect();
        Room { version: VERSION, code, learners: BTreeMap::new(), path: PathBuf::new() }
    }

    /// Exercises the course no longer has (the instructor's copy was updated).
    fn forget_unknown(&mut self, outline: &Outline) {
        for learner in self.learners.values_mut() {
            learner.exercises.retain(|step, exercises| {
                exercises.retain(|name, _| outline.has(step, name));
                !exercises.is_empty()
            });
        }
    }

    /// The code, as shown: `KQXR-47MW`.
    pub fn code(&self) -> String {
        report::show_code(&self.code)
    }

    /// Compared in constant time: how long a wrong code takes to refuse
    /// says nothing about how much of it was right.
    pub fn code_matches(&self, typed: &str) -> bool {
        let typed = report::normalize_code(typed);
        typed.len() == self.code.len() && bool::from(typed.as_bytes().ct_eq(self.code.as_bytes()))
    }

    pub fn learners(&self) -> impl Iterator<Item = &Learner> {
        self.learners.values()
    }

    /// Takes a learner's report, whole or not at all.
    pub fn report(
        &mut self,
        seat: &str,
        report: Report,
        outline: &Outline,
        now: u64,
    ) -> Result<Arrival, Refusal> {
        check(&report, outline).map_err(Refusal::Invalid)?;
        let taken = |(other, learner): (&String, &Learner)| {
            other != seat && learner.name.to_lowercase() == report.name.to_lowercase()
        };
        if self.learners.iter().any(taken) {
            return Err(Refusal::NameTaken);
        }
        let arrival = match self.learners.contains_key(seat) {
            true => Arrival::Reported,
            false if self.learners.len() >= MOST_LEARNERS => return Err(Refusal::Full),
            false => Arrival::Joined,
        };
        let learner = self.learners.entry(seat.to_string()).or_insert_with(|| Learner {
            name: String::new(),
            joined_at: now,
            exercises: BTreeMap::new(),
        });
        learner.name = report.name;
        for check in report.checks {
            learner.take(check, now);
        }
        Ok(arrival)
    }

    /// Forgets a learner; their name, if there was one.
    pub fn leave(&mut self, seat: &str) -> Option<String> {
        self.learners.remove(seat).map(|learner| learner.name)
    }

    pub fn save(&self) -> std::io::Result<()> {
        if let Some(folder) = self.path.parent() {
            fs::create_dir_all(folder)?;
        }
        let text = serde_json::to_vec(self).expect("the room is plain data");
        let temporary = self.path.with_extension("json.new");
        fs::write(&temporary, text)?;
        fs::rename(&temporary, &self.path)
    }
}

/// What is wrong with a report, if anything.
fn check(report: &Report, outline: &Outline) -> Result<(), String> {
    report::check_name(&report.name)?;
    if report.checks.len() > report::CHECKS_PER_REPORT {
        return Err(format!("more than {} checks in one report", report::CHECKS_PER_REPORT));
    }
    for check in &report.checks {
        if !outline.has(&check.step, &check.exercise) {
            return Err(format!(
                "this class's course has no exercise `{}` in step `{}`: is your copy of the \
                 workshop the instructor's version? (git pull)",
                check.exercise.chars().take(80).collect::<String>(),
                check.step.chars().take(80).collect::<String>()
            ));
        }
        report::check_text(
            "a check's first line",
            check.hint.as_deref().unwrap_or(""),
            report::HINT_CHARS,
        )?;
    }
    Ok(())
}

impl Learner {
    /// One check's result, unless the class already has a later one.
    fn take(&mut self, check: CheckReport, now: u64) {
        let at = now.saturating_sub(check.seconds_ago);
        let exercises = self.exercises.entry(check.step).or_default();
        let before = exercises.get(&check.exercise);
        if before.is_some_and(|before| at + SAME_TIME < before.checked_at) {
            return;
        }
        let was_failing = before.and_then(|before| before.failing_since);
        let (hint, failing_since) = match check.outcome {
            Outcome::Passed => (None, None),
            Outcome::Failed => (check.hint, Some(was_failing.map_or(at, |since| since.min(at)))),
        };
        let checked_at = before.map_or(at, |before| before.checked_at.max(at));
        let standing = Standing { outcome: check.outcome, hint, checked_at, failing_since };
        exercises.insert(check.exercise, standing);
    }

    /// Their latest check: the step, the exercise, and how it stands.
    pub fn latest(&self) -> Option<(&str, &str, &Standing)> {
        let all = self.exercises.iter().flat_map(|(step, exercises)| {
            exercises.iter().map(move |(name, standing)| (step.as_str(), name.as_str(), standing))
        });
        all.max_by_key(|(_, _, standing)| standing.checked_at)
    }

    /// For how long they have been stuck, if they have been for over
    /// `after`: their latest check failed, and that exercise has failed
    /// since longer ago than that.
    pub fn stuck(&self, now: u64, after: Duration) -> Option<Duration> {
        let (_, _, standing) = self.latest()?;
        let stuck_for = Duration::from_secs(now.saturating_sub(standing.failing_since?));
        (stuck_for > after).then_some(stuck_for)
    }

    pub fn standing(&self, step: &str, exercise: &str) -> Option<&Standing> {
        self.exercises.get(step)?.get(exercise)
    }
}
