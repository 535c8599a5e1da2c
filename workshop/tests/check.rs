//! `cargo workshop check` on a step of a scratch copy: the check fails as
//! shipped, with what a client still sees wrong; passes once the reference
//! solution is applied; and the progress file says both.

mod support;

use support::{Scratch, said};

#[test]
fn a_check_fails_as_shipped_and_passes_with_its_solution() {
    let scratch = Scratch::new("check");

    let shipped = scratch.workshop(&["check", "1", "2"]);
    let output = said(&shipped);
    assert_eq!(shipped.status.code(), Some(1), "{output}");
    assert!(output.contains("01-starter exercise 2 (a name from an option): not yet"), "{output}");
    assert!(output.contains("with SERVICE2_NAME=blue"), "the check's own words: {output}");
    assert!(output.contains("cargo workshop hint 1 2"), "{output}");
    assert!(!output.contains("Compiling"), "cargo's noise: {output}");
    let record = &scratch.progress()["steps"]["01-starter"]["a_name_from_an_option"];
    assert_eq!(record["last_check"]["outcome"], "failed", "{record}");
    assert!(record["last_check"]["hint"].as_str().unwrap().contains("SERVICE2_NAME=blue"));

    let applied = scratch.workshop(&["solution", "1", "2", "--apply", "--yes"]);
    assert!(applied.status.success(), "{}", said(&applied));

    let solved = scratch.workshop(&["check", "1", "2"]);
    let output = said(&solved);
    assert!(solved.status.success(), "{output}");
    assert!(output.contains("01-starter exercise 2 (a name from an option): done"), "{output}");
    let record = &scratch.progress()["steps"]["01-starter"]["a_name_from_an_option"];
    assert_eq!(record["last_check"]["outcome"], "passed", "{record}");

    let status = said(&scratch.workshop(&[]));
    assert!(status.contains("done, just now"), "{status}");
    assert!(status.contains("Next: 01-starter exercise 1 (a third service)"), "{status}");
}

#[test]
fn a_step_or_exercise_that_does_not_exist_lists_the_ones_that_do() {
    let scratch = Scratch::new("unknown");
    let output = scratch.workshop(&["check", "12"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(said(&output).contains("01-starter, 02-connect"), "{}", said(&output));
    let output = scratch.workshop(&["hint", "07-circuit-breaker", "9"]);
    assert!(said(&output).contains("1 (a get falls back to the last answer)"), "{}", said(&output));
}
