//! The size of each lesson, `git diff --no-index` between neighbouring
//! steps, as CONTRIBUTING.md's table gives it: measured here, so that the
//! table cannot drift from the steps (it did, by a few lines a lesson).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The lines `git diff --no-index --numstat` counts as inserted from `a` to
/// `b` (paths relative to the workspace), leaving out the files `skip` says.
fn inserted(a: &str, b: &str, skip: impl Fn(&str) -> bool) -> u64 {
    let output = Command::new("git")
        .args(["diff", "--no-index", "--numstat", a, b])
        .current_dir(workspace_root())
        .output()
        .expect("git on PATH: the lesson sizes are what `git diff --no-index` counts");
    // Exit 1 means "they differ", which they do.
    assert!(output.status.code() == Some(1), "git diff --no-index {a} {b} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.splitn(3, '\t');
            let added = columns.next()?.parse::<u64>().ok()?; // "-" for a binary file
            let path = columns.nth(1)?;
            (!skip(path)).then_some(added)
        })
        .sum()
}

/// The frame (platform/) and the stand-in for Consul (registry/): what a
/// learner may skip, so the second column leaves them out.
fn frame(path: &str) -> bool {
    path.contains("src/platform/") || path.contains("src/registry/")
}

/// What is data or local state, not reading: Grafana's dashboard JSON, and
/// step 10's databases if the step was run from its folder.
fn not_reading(path: &str) -> bool {
    (path.contains("/dashboards/") && path.ends_with(".json")) || path.contains("/data/")
}

fn steps() -> Vec<String> {
    let mut steps: Vec<String> = std::fs::read_dir(workspace_root())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.len() > 3 && name.as_bytes()[..2].iter().all(u8::is_ascii_digit))
        .collect();
    steps.sort();
    steps
}

/// The table as CONTRIBUTING.md must give it.
fn measured_table() -> String {
    let mut table = String::from(
        "| lesson | src/ | src/ without platform/ and registry/ | folder |\n\
         | --- | --- | --- | --- |\n",
    );
    for pair in steps().windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (a_src, b_src) = (format!("{a}/src"), format!("{b}/src"));
        let src = inserted(&a_src, &b_src, |_| false);
        let pattern = inserted(&a_src, &b_src, frame);
        let folder = inserted(a, b, not_reading);
        table.push_str(&format!("| {} -> {} | {src} | {pattern} | {folder} |\n", &a[..2], &b[..2]));
    }
    table
}

#[test]
fn contributing_gives_each_lessons_size_as_measured() {
    let contributing = std::fs::read_to_string(workspace_root().join("CONTRIBUTING.md")).unwrap();
    let start = "<!-- lesson sizes: conventions/tests/lessons.rs measures this table -->\n";
    let Some((_, rest)) = contributing.split_once(start) else {
        panic!("CONTRIBUTING.md has no line {start:?} before its table of lesson sizes")
    };
    let written: String = rest
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect();
    let measured = measured_table();
    assert_eq!(
        written, measured,
        "CONTRIBUTING.md's table of lesson sizes is not what the steps measure; paste this one:\n{measured}"
    );
}
