//! A learner's work is never thrown away: before a step goes back as
//! shipped (`reset`, `solution --apply`), what they changed in it is saved
//! as a patch in `progress/saved/`, and they are told the command that
//! brings it back.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::course::{Course, Step};
use crate::error::{self, Result};
use crate::git::Git;
use crate::progress::{self, Progress};

/// A step the learner changed, and what they changed.
pub struct Changed<'c> {
    pub step: &'c Step,
    pub patch: String,
}

impl Changed<'_> {
    /// How many files the change touches, in words, for the question
    /// before a reset.
    pub fn files(&self) -> String {
        match self.patch.lines().filter(|line| line.starts_with("diff --git ")).count() {
            1 => "1 file changed".to_string(),
            count => format!("{count} files changed"),
        }
    }
}

/// The steps among `steps` that differ from how they were shipped.
pub fn changed<'c>(git: &Git, steps: &[&'c Step]) -> Result<Vec<Changed<'c>>> {
    let mut changed = Vec::new();
    for step in steps {
        if let Some(patch) = git.changes(step)? {
            changed.push(Changed { step, patch });
        }
    }
    Ok(changed)
}

/// Saves each change as a patch, then puts its step back as shipped (and
/// forgets its checks, which were about the code now gone); returns where
/// each patch is.
pub fn save_and_restore(course: &Course, git: &Git, changed: &[Changed]) -> Result<Vec<PathBuf>> {
    let folder = course.root.join(progress::FOLDER).join("saved");
    std::fs::create_dir_all(&folder).map_err(|error| error::io(folder.display(), error))?;
    // A file name without ':', which Windows does not allow.
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "-");
    let mut saved = Vec::new();
    let mut progress = Progress::load(course);
    for change in changed {
        let path = folder.join(format!("{}-{stamp}.patch", change.step.folder));
        std::fs::write(&path, &change.patch).map_err(|error| error::io(path.display(), error))?;
        git.restore(change.step)?;
        progress.forget_checks(change.step);
        saved.push(path);
    }
    progress.save()?;
    Ok(saved)
}

/// How the learner brings a saved patch back, from the workspace's root.
pub fn bring_back(course: &Course, patch: &std::path::Path) -> String {
    let relative = patch.strip_prefix(&course.root).unwrap_or(patch);
    format!("git apply {}", relative.display().to_string().replace('\\', "/"))
}
