//! The progress file survives an update of the course: an entry for an
//! exercise or a step that is gone is dropped, and a file that cannot be
//! read is set aside with a warning, never a panic.

mod support;

use std::fs;

use serde_json::json;
use support::{Scratch, said};

#[test]
fn an_entry_for_a_removed_exercise_is_dropped() {
    let scratch = Scratch::new("progress-removed");
    let passed = json!({ "last_check": { "outcome": "passed", "at": "2026-01-01T10:00:00Z" } });
    let before = json!({
        "version": 1,
        "steps": {
            "01-starter": { "a_third_service": passed, "an_exercise_since_renamed": passed },
            "11-a-step-since-removed": { "anything": passed }
        }
    });
    fs::create_dir_all(scratch.path("progress")).unwrap();
    fs::write(scratch.path("progress/progress.json"), before.to_string()).unwrap();

    let status = scratch.workshop(&[]);
    assert!(status.status.success(), "{}", said(&status));
    assert!(said(&status).contains("done"), "{}", said(&status));
    // Any command that records something writes what it keeps.
    assert!(scratch.workshop(&["hint", "1", "2"]).status.success());

    let steps = &scratch.progress()["steps"];
    assert_eq!(steps["01-starter"]["a_third_service"], passed);
    assert_eq!(steps["01-starter"].get("an_exercise_since_renamed"), None, "{steps}");
    assert_eq!(steps.get("11-a-step-since-removed"), None, "{steps}");
}

#[test]
fn a_corrupt_progress_file_is_set_aside_with_a_warning() {
    let scratch = Scratch::new("progress-corrupt");
    fs::create_dir_all(scratch.path("progress")).unwrap();
    fs::write(scratch.path("progress/progress.json"), "{ \"version\": 1, \"steps\": [tru").unwrap();

    let status = scratch.workshop(&[]);
    assert!(status.status.success(), "{}", said(&status));
    assert!(said(&status).contains("could not be read"), "{}", said(&status));
    let aside = fs::read_dir(scratch.path("progress"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|entry| entry.file_name().to_string_lossy().starts_with("progress-unreadable-"));
    assert!(aside, "the unreadable file is kept aside");
}
