//! A scratch copy of the workspace for the companion to work on, as a
//! learner's clone: the files git knows, in a git repository of their own
//! with one commit, the workshop as shipped.
//!
//! Each test's copy has a fixed place, target/workshop-tests/<name>, and
//! every copy builds into target/workshop-tests/target: the dependencies are
//! compiled once, not once per test or per run, and a run replaces the
//! copies of the run before rather than adding to the disk.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long a check may take when it has to build a step (and, the first
/// time, its dependencies) on a slow, busy machine.
pub const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tests_folder() -> PathBuf {
    workspace_root().join("target").join("workshop-tests")
}

pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    /// A fresh copy of the workspace, named `name`.
    pub fn new(name: &str) -> Scratch {
        let root = tests_folder().join(name);
        if root.exists() {
            fs::remove_dir_all(&root).unwrap();
        }
        let listed = git(
            &workspace_root(),
            &["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        );
        for file in String::from_utf8(listed.stdout).unwrap().split('\0').filter(|f| !f.is_empty())
        {
            let (from, to) = (workspace_root().join(file), root.join(file));
            if from.is_file() {
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::copy(&from, &to).unwrap();
            }
        }
        git(&root, &["init", "-q"]);
        git(&root, &["add", "--all"]);
        git(
            &root,
            &[
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@localhost",
                "commit",
                "-q",
                "-m",
                "shipped",
            ],
        );
        Scratch { root }
    }

    /// `cargo workshop <args>`, in this copy, without a terminal.
    pub fn workshop(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The command that runs the companion here, to spawn as a test likes.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_workshop"));
        command
            .args(args)
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", tests_folder().join("target"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    pub fn git(&self, args: &[&str]) -> Output {
        git(&self.root, args)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The progress file, as JSON (null if there is none).
    pub fn progress(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.path("progress/progress.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }
}

fn git(folder: &Path, args: &[&str]) -> Output {
    let output = Command::new("git").args(args).current_dir(folder).output().unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// What a command printed, both streams, for assertions and their messages.
pub fn said(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}
