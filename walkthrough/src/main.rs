//! Runs each step's README walk-through against the real step, and fails,
//! naming the block and showing the difference, where the step prints
//! something other than what the README shows.
//!
//! ```sh
//! cargo run -p walkthrough                 # every step
//! cargo run -p walkthrough -- 04 07        # some steps, by number or folder
//! ```
//!
//! How a README marks its blocks: CONTRIBUTING.md, "README walk-throughs".

mod compare;
mod readme;
mod session;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use session::{Report, Session};

fn main() -> ExitCode {
    // The READMEs' commands are a Unix shell's (`sh`, `curl`, `kill -9`), and
    // a terminal's Ctrl-C is a signal to a process group: Windows has
    // neither. The program builds there, as the whole workspace must.
    if cfg!(not(unix)) {
        eprintln!(
            "walkthrough: the READMEs' commands need a Unix shell (sh, kill, process groups); \
             on Windows, run it in WSL, or read the READMEs by hand"
        );
        return ExitCode::FAILURE;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let steps = match steps(&root, &asked) {
        Ok(steps) => steps,
        Err(e) => {
            eprintln!("walkthrough: {e}");
            return ExitCode::from(2);
        }
    };
    // Built first, so that a service's start is not a compile.
    let mut build = Command::new("cargo");
    build.args(["build", "--quiet"]).current_dir(&root);
    for step in &steps {
        build.args(["-p", &package(step)]);
    }
    if !build.status().is_ok_and(|s| s.success()) {
        eprintln!("walkthrough: the steps do not build");
        return ExitCode::FAILURE;
    }

    let mut failed = Vec::new();
    for step in &steps {
        let started = Instant::now();
        let mut report = Report::default();
        let result = walk(&root, step, &mut report);
        let seconds = started.elapsed().as_secs_f32();
        match &result {
            Ok(()) => println!(
                "ok    {step}: {} commands, {} outputs compared ({seconds:.0} s)",
                report.commands, report.outputs_compared
            ),
            Err(e) => {
                println!("FAIL  {step}/README.md {e}\n");
                failed.push(step.clone());
            }
        }
        for why in &report.not_run {
            println!("      not run: {step}/README.md {why}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\nwalk-throughs that differ from their README: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

fn walk(root: &Path, step: &str, report: &mut Report) -> Result<(), String> {
    let text =
        std::fs::read_to_string(root.join(step).join("README.md")).map_err(|e| e.to_string())?;
    let items = readme::parse(&text)?;
    let mut session = Session::new(root, &package(step), &text)?;
    session.run(&items, report)?;
    session.close()
}

/// Step folders (`NN-name`), all of them or those asked for.
fn steps(root: &Path, asked: &[String]) -> Result<Vec<String>, String> {
    let mut all: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.len() > 3
                && name.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && &name[2..3] == "-"
        })
        .filter(|name| PathBuf::from(root).join(name).join("Cargo.toml").exists())
        .collect();
    all.sort();
    if asked.is_empty() {
        return Ok(all);
    }
    asked
        .iter()
        .map(|want| {
            all.iter()
                .find(|step| step.starts_with(want.trim_end_matches('/')))
                .cloned()
                .ok_or_else(|| format!("no step folder starts with `{want}`"))
        })
        .collect()
}

/// `04-service-discovery` is the package `step04-service-discovery`.
fn package(step: &str) -> String {
    format!("step{step}")
}
