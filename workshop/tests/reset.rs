//! `cargo workshop reset`: a changed step back as shipped, byte for byte,
//! and the learner's work saved as a patch that brings it back.

mod support;

use std::fs;

use serde_json::json;
use support::{Scratch, said};

#[test]
fn reset_puts_a_step_back_and_its_patch_brings_the_work_back() {
    let scratch = Scratch::new("reset");
    let service1 = scratch.path("01-starter/src/service1.rs");
    let shipped = fs::read(&service1).unwrap();
    let mut changed = shipped.clone();
    changed.extend_from_slice(b"\n// A learner's line.\n");
    fs::write(&service1, &changed).unwrap();
    fs::write(scratch.path("01-starter/src/service3.rs"), "// A learner's new file.\n").unwrap();
    fs::remove_file(scratch.path("01-starter/README.md")).unwrap();
    let failed = json!({ "outcome": "failed", "at": "2026-01-01T10:00:00Z", "hint": "not yet" });
    let recorded = json!({
        "version": 1,
        "steps": { "01-starter": { "a_third_service": { "last_check": failed, "hints_seen": 2 } } }
    });
    fs::create_dir_all(scratch.path("progress")).unwrap();
    fs::write(scratch.path("progress/progress.json"), recorded.to_string()).unwrap();

    let refused = scratch.workshop(&["reset", "1"]);
    assert_eq!(refused.status.code(), Some(2), "without a terminal and --yes: {}", said(&refused));
    assert!(said(&refused).contains("--yes"), "{}", said(&refused));
    assert!(said(&refused).contains("the results of its checks are cleared"), "{}", said(&refused));
    assert_eq!(fs::read(&service1).unwrap(), changed, "nothing changes before the answer");

    let reset = scratch.workshop(&["reset", "1", "--yes"]);
    let output = said(&reset);
    assert!(reset.status.success(), "{output}");
    let status = scratch.git(&["status", "--porcelain"]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "git sees changes after reset: {output}"
    );
    assert_eq!(fs::read(&service1).unwrap(), shipped);
    assert!(output.contains("Its checks' results are cleared from your progress"), "{output}");
    let record = &scratch.progress()["steps"]["01-starter"]["a_third_service"];
    assert_eq!(record, &json!({ "hints_seen": 2 }), "the check is forgotten, the hints read stay");
    let status = said(&scratch.workshop(&[]));
    assert!(status.contains("1 a third service") && status.contains("not tried"), "{status}");

    let bring_back =
        output.lines().find_map(|line| line.trim().strip_prefix("To bring them back: "));
    let bring_back =
        bring_back.unwrap_or_else(|| panic!("no command to bring the work back: {output}"));
    let patch = bring_back.strip_prefix("git apply ").unwrap();
    scratch.git(&["apply", patch]);
    assert_eq!(fs::read(&service1).unwrap(), changed);
    let new_file = fs::read_to_string(scratch.path("01-starter/src/service3.rs")).unwrap();
    assert_eq!(new_file, "// A learner's new file.\n");
    assert!(!scratch.path("01-starter/README.md").exists());

    let again = scratch.workshop(&["reset", "2", "--yes"]);
    assert!(
        said(&again).contains("02-connect is as shipped: nothing to reset"),
        "{}",
        said(&again)
    );
}
