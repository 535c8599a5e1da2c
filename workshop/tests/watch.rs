//! `cargo workshop check --watch` runs the check again when a file of the
//! step is saved.

mod support;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use support::{BUILD_PATIENCE, Scratch};

#[test]
fn watch_checks_again_after_a_save() {
    let scratch = Scratch::new("watch");
    let mut watching =
        scratch.command(&["check", "1", "1", "--watch"]).stdout(Stdio::piped()).spawn().unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = BufReader::new(watching.stdout.take().unwrap());
    std::thread::spawn(move || {
        stdout.lines().map_while(Result::ok).try_for_each(|line| lines.send(line))
    });
    let started = Instant::now();
    let wait_for = |what: &str| loop {
        let left = BUILD_PATIENCE.saturating_sub(started.elapsed());
        match received.recv_timeout(left) {
            Ok(line) if line.contains(what) => break,
            Ok(_) => continue,
            Err(_) => panic!("no line with {what:?} within {BUILD_PATIENCE:?}"),
        }
    };

    wait_for("01-starter exercise 1 (a third service): not yet");
    wait_for("Watching 01-starter/ for saves");
    let mut saved =
        OpenOptions::new().append(true).open(scratch.path("01-starter/src/service2.rs")).unwrap();
    writeln!(saved, "// Saved by the test.").unwrap();
    drop(saved);
    wait_for("Checking 01-starter exercise 1");
    wait_for("01-starter exercise 1 (a third service): not yet");
    watching.kill().unwrap();
    watching.wait().unwrap();
}
