//! The shipped state of a step is what git has in the last commit: `reset`
//! and `solution --apply` go back to it, after saving what the learner
//! changed, and `diff` shows it. Only these need git; every other command
//! works without it (and `diff` without it shows the folders as they are).
//!
//! The learner's own index is never touched to find the changes: new files
//! are added to a temporary index, so that `git diff` shows them too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::course::{Course, Step};
use crate::error::{Error, Result};

pub struct Git {
    root: PathBuf,
}

impl Git {
    /// Git, for the workspace of `course`; an error that says what to do
    /// when there is no git, or no history to go back to.
    pub fn of(course: &Course) -> Result<Git> {
        let git = Git { root: course.root.clone() };
        if git.run(&["--version"]).is_err() {
            return Err(Error::new(
                "this needs git, which is not on PATH: install it (https://git-scm.com) and try \
                 again",
            ));
        }
        if !course.has_git() || git.run(&["rev-parse", "--verify", "-q", "HEAD"]).is_err() {
            return Err(Error::new(
                "this copy of the workshop has no git history, so nothing records how the steps \
                 were shipped. `cargo workshop init` records it now: do it before you change \
                 anything (or download the workshop again first)",
            ));
        }
        Ok(git)
    }

    /// What the learner changed in `step` since it was shipped, new files
    /// included, as a patch `git apply` takes; None if nothing.
    pub fn changes(&self, step: &Step) -> Result<Option<String>> {
        let index = self.root.join(crate::progress::FOLDER).join("reset.index");
        let index_text = index.display().to_string();
        std::fs::create_dir_all(index.parent().unwrap_or(Path::new(".")))
            .map_err(|error| crate::error::io(index.display(), error))?;
        let with_index = [("GIT_INDEX_FILE", index_text.as_str())];
        let diffed = self
            .run_with(&["read-tree", "HEAD"], &with_index)
            .and_then(|_| self.run_with(&["add", "--all", "--", &step.folder], &with_index))
            .and_then(|_| {
                self.run_with(
                    &["diff", "--cached", "--binary", "HEAD", "--", &step.folder],
                    &with_index,
                )
            });
        let _ = std::fs::remove_file(&index);
        let patch = String::from_utf8_lossy(&diffed?.stdout).into_owned();
        Ok(Some(patch).filter(|patch| !patch.trim().is_empty()))
    }

    /// Puts `step` back as shipped: files changed or deleted restored, files
    /// added removed (ignored ones, such as step 10's data/, stay).
    pub fn restore(&self, step: &Step) -> Result<()> {
        let folder = step.folder.as_str();
        self.run(&["restore", "--source=HEAD", "--staged", "--worktree", "--", folder])?;
        self.run(&["clean", "-f", "-d", "-q", "--", folder])?;
        Ok(())
    }

    /// The files under `folder` (from the workspace's root) as shipped, as
    /// paths relative to it with `/`.
    pub fn shipped_files(&self, folder: &str) -> Result<Vec<String>> {
        let listed = self.run(&["ls-tree", "-r", "-z", "--name-only", "HEAD", "--", folder])?;
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let files = listed.split('\0').filter_map(|path| path.strip_prefix(&prefix));
        Ok(files.map(str::to_string).collect())
    }

    /// A file as shipped; empty if it was not.
    pub fn shipped(&self, path: &str) -> String {
        let shown = self.run(&["show", &format!("HEAD:{path}")]);
        shown.map(|shown| String::from_utf8_lossy(&shown.stdout).into_owned()).unwrap_or_default()
    }

    /// True if anything under `folder` differs from how it was shipped (new
    /// files too). Read-only: no lock on the learner's index.
    pub fn is_edited(&self, folder: &str) -> Result<bool> {
        let status = ["--no-optional-locks", "status", "--porcelain", "--untracked-files=all"];
        let said = self.run(&[&status[..], &["--", folder]].concat())?;
        Ok(!said.stdout.is_empty())
    }

    /// Applies a patch from the workspace's root.
    pub fn apply(&self, patch: &Path) -> Result<()> {
        self.run(&["apply", "--whitespace=nowarn", &patch.display().to_string()]).map(drop)
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let output = Command::new("git")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.root)
            .output()
            .map_err(|error| Error::new(format!("cannot run git: {error}")))?;
        if !output.status.success() {
            return Err(Error::new(format!(
                "`git {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(output)
    }
}
