//! Runs exercise checks as the READMEs' long command does
//! (`cargo test -p <step> --test exercises -- --ignored ...`), and reads
//! what came out: for each check, passed, or failed with its message; or
//! the step did not build, with the compiler's first error. Cargo's own
//! lines are shown as they come only as one line of progress.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::{Command, Stdio};

use crate::course::{Exercise, Step};
use crate::error::{Error, Result};
use crate::terminal::Style;

pub enum Ran {
    /// Each check that ran, and how it went.
    Checked(Vec<(String, Verdict)>),
    /// The step did not compile: the compiler's first error.
    DoesNotBuild(String),
}

pub enum Verdict {
    Passed,
    /// What the check said, its location left out.
    Failed {
        message: String,
        location: Option<String>,
    },
}

/// Runs the checks of `exercises` (all of them in one cargo command).
pub fn run(step: &Step, exercises: &[&Exercise]) -> Result<Ran> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["test", "-p", &step.package(), "--test", "exercises", "--color", "never"]);
    command.args(["--", "--ignored", "--test-threads=1", "--color", "never"]);
    match exercises {
        [exercise] => command.args(["--exact", &exercise.test()]),
        _ => command.arg("exercise_"),
    };
    // The checks print their own hints; a backtrace would bury them.
    command.env("RUST_BACKTRACE", "0").stdin(Stdio::null());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child =
        command.spawn().map_err(|error| Error::new(format!("cannot run cargo: {error}")))?;

    let mut stdout = child.stdout.take().expect("piped");
    let tests = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let cargo = follow_cargo(BufReader::new(child.stderr.take().expect("piped")));
    let tests = tests.join().unwrap_or_default();
    let _ = child.wait();
    read_results(&tests, &cargo)
}

/// Collects cargo's output, showing what it compiles on one line that
/// each new line overwrites, when a person watches.
fn follow_cargo(stderr: impl BufRead) -> String {
    let live = std::io::stderr().is_terminal();
    let mut text = String::new();
    for line in stderr.lines().map_while(|line| line.ok()) {
        let doing = line.trim_start();
        if live && (doing.starts_with("Compiling") || doing.starts_with("Running")) {
            let shown: String = doing.chars().take(70).collect();
            eprint!("\r\x1b[2K{}", Style::Dim.paint_err(&shown));
            let _ = std::io::stderr().flush();
        }
        text.push_str(&line);
        text.push('\n');
    }
    if live {
        eprint!("\r\x1b[2K");
    }
    text
}

fn read_results(tests: &str, cargo: &str) -> Result<Ran> {
    if !tests.contains("test result:") {
        return match first_error(cargo) {
            Some(error) => Ok(Ran::DoesNotBuild(error)),
            None => Err(Error::new(format!("the check did not run; cargo said:\n{}", tail(cargo)))),
        };
    }
    let mut checked = Vec::new();
    for line in tests.lines() {
        let Some((test, result)) =
            line.strip_prefix("test ").and_then(|rest| rest.split_once(" ... "))
        else {
            continue;
        };
        let verdict = match result.trim() {
            "ok" => Verdict::Passed,
            "FAILED" => failure(tests, test),
            _ => continue,
        };
        checked.push((test.to_string(), verdict));
    }
    Ok(Ran::Checked(checked))
}

/// What the failed check `test` printed: libtest shows it between
/// `---- <test> stdout ----` and the next such line or the list of failures.
fn failure(tests: &str, test: &str) -> Verdict {
    let start = format!("---- {test} stdout ----");
    let printed = tests.split_once(&start).map(|(_, rest)| rest).unwrap_or_default();
    let printed = printed.split("\n---- ").next().unwrap_or_default();
    let printed = printed.split("\nfailures:").next().unwrap_or_default();
    let mut location = None;
    let mut message = Vec::new();
    for line in printed.lines() {
        if let Some(at) = line.strip_prefix("panicked at ").or_else(|| after_thread(line)) {
            location = Some(at.trim_end_matches(':').to_string());
        } else if !line.starts_with("note: run with `RUST_BACKTRACE") {
            message.push(line);
        }
    }
    let message = message.join("\n").trim().to_string();
    // assert_eq! with a message of its own: the message says what was seen
    // in words, and the preamble and the Debug of both sides add only noise.
    let message = match message.strip_prefix("assertion `left == right` failed: ") {
        Some(said) => said.lines().filter(|line| !is_side(line)).collect::<Vec<_>>().join("\n"),
        None => message,
    };
    Verdict::Failed { message: message.trim().to_string(), location }
}

/// `  left: …` and ` right: …`, the two sides of a failed assert_eq!.
fn is_side(line: &str) -> bool {
    line.starts_with("  left: ") || line.starts_with(" right: ")
}

/// A panic without the checks' own hook: "thread '…' panicked at <where>:".
fn after_thread(line: &str) -> Option<&str> {
    line.strip_prefix("thread '")?.split_once(" panicked at ").map(|(_, at)| at)
}

/// The compiler's first error, whole: from its `error` line to the blank
/// line that ends it. The errors after it often follow from it.
fn first_error(cargo: &str) -> Option<String> {
    let lines: Vec<&str> = cargo.lines().collect();
    let start = lines.iter().position(|line| {
        line.starts_with("error") && !line.starts_with("error: could not compile")
    })?;
    let length = lines[start..]
        .iter()
        .position(|line| line.trim().is_empty())
        .unwrap_or(lines.len() - start);
    Some(lines[start..start + length].join("\n"))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_gives_its_message_without_the_noise() {
        let tests = "running 1 test\ntest exercise_1_a ... FAILED\n\nfailures:\n\n\
                     ---- exercise_1_a stdout ----\n\npanicked at 01-starter/tests/exercises.rs:30:5:\n\
                     assertion `left == right` failed: service3 answered 404\n  left: 404\n right: 200\n\n\n\
                     failures:\n    exercise_1_a\n\ntest result: FAILED. 0 passed; 1 failed\n";
        let Ok(Ran::Checked(checked)) = read_results(tests, "") else { panic!("no results") };
        let [(test, Verdict::Failed { message, location })] = checked.as_slice() else {
            panic!("not one failure")
        };
        assert_eq!(test, "exercise_1_a");
        assert_eq!(message, "service3 answered 404");
        assert_eq!(location.as_deref(), Some("01-starter/tests/exercises.rs:30:5"));
    }

    #[test]
    fn a_build_error_is_the_first_error_whole() {
        let cargo = "   Compiling step01-starter v0.1.0\nwarning: unused\n\nerror[E0425]: cannot find value `x`\n \
                     --> src/lib.rs:3:5\n  |\n3 |     x\n  |     ^ not found\n\nerror: aborting\n\
                     error: could not compile `step01-starter`\n";
        let Ok(Ran::DoesNotBuild(error)) = read_results("", cargo) else { panic!("built") };
        assert!(error.starts_with("error[E0425]: cannot find value `x`"), "{error}");
        assert!(error.ends_with("^ not found"), "{error}");
    }
}
