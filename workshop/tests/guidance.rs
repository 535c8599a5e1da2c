//! What the companion tells a learner who finds their way with it alone:
//! the lesson as shipped whatever they edited, hints that say which levels
//! exist, a discussion exercise that has no check, "Next" that does not
//! pass over what was never tried, and a welcome that asks only what is
//! still to do. None of these builds a step.

mod support;

use std::fs;
use std::process::Output;

use serde_json::json;
use support::{Scratch, said};

/// What a command printed, after it succeeded.
fn succeeded(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "{}", said(output));
    said(output)
}

/// `text` with its lines wrapped back into one: what it says, not where
/// the terminal's width broke it.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn write_progress(scratch: &Scratch, progress: serde_json::Value) {
    fs::create_dir_all(scratch.path("progress")).unwrap();
    fs::write(scratch.path("progress/progress.json"), progress.to_string()).unwrap();
}

#[test]
fn diff_shows_the_steps_as_shipped_and_says_the_learners_edits_are_not_in_it() {
    let scratch = Scratch::new("guidance-diff");
    let shipped = succeeded(&scratch.workshop(&["diff", "2"]));
    assert!(shipped.starts_with("What 02-connect adds to 01-starter"), "{shipped}");
    assert!(!shipped.contains("Your edits"), "nothing is edited yet: {shipped}");

    // Exercise 1 of step 01 done: a new file, and a line in lib.rs.
    fs::write(scratch.path("01-starter/src/service3.rs"), "//! service3, by a learner.\n").unwrap();
    let lib = scratch.path("01-starter/src/lib.rs");
    let edited = fs::read_to_string(&lib).unwrap() + "pub mod service3;\n";
    fs::write(&lib, edited).unwrap();

    let after = succeeded(&scratch.workshop(&["diff", "2"]));
    assert!(!after.contains("service3"), "the learner's edits are in the lesson: {after}");
    assert!(
        flat(&after).contains(
            "Your edits in 01-starter/src are not in this diff, which is of the steps as shipped; \
             `git status 01-starter/src` and `git diff 01-starter/src` show them."
        ),
        "{after}"
    );
    assert!(!after.contains("Your edits in 02-connect"), "{after}");
    let lesson = |text: &str| text.lines().skip_while(|line| !line.starts_with("1. ")).count();
    assert_eq!(lesson(&after), lesson(&shipped), "the lesson itself is the same");

    // A zip download has no history to tell: the folders as they are, said.
    fs::remove_dir_all(scratch.path(".git")).unwrap();
    let unzipped = succeeded(&scratch.workshop(&["diff", "2"]));
    assert!(flat(&unzipped).contains("This copy has no git history"), "{unzipped}");
    assert!(unzipped.contains("src/service3.rs (removed)"), "{unzipped}");
}

#[test]
fn hint_levels_say_which_exist_and_what_level_1_is() {
    let scratch = Scratch::new("guidance-hint");
    let second = succeeded(&scratch.workshop(&["hint", "7", "1", "--level", "2"]));
    assert!(second.starts_with("Hint 2 of 3, 07-circuit-breaker exercise 1"), "{second}");
    assert!(
        second.contains("(Hint 1 is its check's own failure message: cargo workshop check 7 1)"),
        "{second}"
    );
    assert!(second.contains("Still stuck? Hint 3: cargo workshop hint 7 1 --level 3"), "{second}");

    let first = succeeded(&scratch.workshop(&["hint", "7", "1", "--level", "1"]));
    assert!(first.contains("Hint 1 of 3") && first.contains("check's own failure message"));
    assert!(first.contains("cargo workshop check 7 1"), "{first}");

    for level in ["4", "0", "200"] {
        let beyond = scratch.workshop(&["hint", "7", "1", "--level", level]);
        assert_eq!(beyond.status.code(), Some(2), "--level {level}: {}", said(&beyond));
        let expected = format!("has no hint {level}: its hints are 1 to 3");
        assert!(flat(&said(&beyond)).contains(&expected), "{}", said(&beyond));
        assert!(beyond.stdout.is_empty(), "no hint shown: {}", said(&beyond));
    }
}

#[test]
fn a_discussion_exercise_has_no_check_and_says_so() {
    let scratch = Scratch::new("guidance-discussion");
    let hint = succeeded(&scratch.workshop(&["hint", "1", "3"]));
    assert!(hint.contains("01-starter's exercise 3 is a discussion"), "{hint}");
    assert!(flat(&hint).contains("there is no check to run for it"), "{hint}");

    let check = scratch.workshop(&["check", "7", "3"]);
    assert_eq!(check.status.code(), Some(2), "{}", said(&check));
    let said = flat(&said(&check));
    assert!(said.contains("07-circuit-breaker's exercise 3 is a discussion"), "{said}");
    assert!(said.contains("there is no check to run for it"), "{said}");

    let unknown = scratch.workshop(&["hint", "1", "9"]);
    assert!(support::said(&unknown).contains("01-starter has no exercise `9`"));
}

#[test]
fn next_names_the_exercises_it_passes_over_that_were_never_tried() {
    let scratch = Scratch::new("guidance-next");
    let passed = json!({ "last_check": { "outcome": "passed", "at": "2026-01-01T10:00:00Z" } });
    write_progress(
        &scratch,
        json!({
            "version": 1,
            "steps": {
                "01-starter": { "a_third_service": passed },
                "02-connect": { "service1_wraps_service2s_answer": passed },
                "07-circuit-breaker": { "a_get_falls_back_to_the_last_answer": passed }
            }
        }),
    );
    let status = succeeded(&scratch.workshop(&[]));
    assert!(status.contains("Next: 07-circuit-breaker exercise 2"), "{status}");
    assert!(
        flat(&status).contains("Also untried, before it: 01 ex 2, 02 ex 2, 03 ex 1, 03 ex 2, 03 ex 3, 04 ex 1, and 5 more."),
        "{status}"
    );
    assert!(status.contains(" days ago") && !status.contains("months"), "whole days: {status}");
    // A name cannot hold an apostrophe; the title the learner reads does.
    assert!(status.contains("1 service1 wraps service2's answer"), "{status}");
}

#[test]
fn the_welcome_asks_for_doctor_only_until_it_passed() {
    let scratch = Scratch::new("guidance-welcome");
    let fresh = succeeded(&scratch.workshop(&[]));
    assert!(fresh.starts_with("Welcome to the workshop."), "{fresh}");
    assert!(
        flat(&fresh).contains("quietly builds this companion"),
        "the first run's wait: {fresh}"
    );
    assert!(fresh.contains("cargo workshop doctor"), "{fresh}");

    write_progress(&scratch, json!({ "version": 1, "doctor_passed": "2026-01-01T10:00:00Z" }));
    let after_doctor = succeeded(&scratch.workshop(&[]));
    assert!(after_doctor.starts_with("Welcome to the workshop."), "{after_doctor}");
    assert!(!after_doctor.contains("doctor"), "{after_doctor}");
}

#[test]
fn the_commands_ci_runs_succeed() {
    let scratch = Scratch::new("guidance-ci");
    for args in [&[][..], &["diff", "7"], &["hint", "7", "1", "--level", "2"], &["diff", "1"]] {
        let output = scratch.workshop(args);
        assert_eq!(output.status.code(), Some(0), "cargo workshop {args:?}: {}", said(&output));
    }
}
