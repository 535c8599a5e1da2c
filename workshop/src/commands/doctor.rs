//! `cargo workshop doctor`: is this laptop ready for the workshop day? One
//! line per thing that matters (pass, warn or fail, and what to do), and a
//! failing exit status if anything would stop a step on the day.

use std::fs;
use std::process::{Command, ExitCode};

use crate::course::Course;
use crate::error::Result;
use crate::progress::Progress;
use crate::terminal::Style;
use crate::{disk, ports};

/// The ports the steps listen on: the gateway, service1 and service2, step
/// 10's services, the registry.
const STEP_PORTS: [u16; 7] = [3001, 3002, 3003, 3005, 3006, 3007, 8500];

#[derive(clap::Args)]
pub struct Args {
    /// The ports to check instead of the steps' own (for the tests)
    #[arg(long, env = "WORKSHOP_DOCTOR_PORTS", value_delimiter = ',', hide = true)]
    ports: Vec<u16>,
}

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

struct Finding {
    verdict: Verdict,
    what: String,
}

fn pass(what: impl Into<String>) -> Finding {
    Finding { verdict: Verdict::Pass, what: what.into() }
}
fn warn(what: impl Into<String>) -> Finding {
    Finding { verdict: Verdict::Warn, what: what.into() }
}
fn fail(what: impl Into<String>) -> Finding {
    Finding { verdict: Verdict::Fail, what: what.into() }
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    // Only a run on the steps' own ports says whether this laptop is ready.
    let own_ports = args.ports.is_empty();
    let ports = if own_ports { STEP_PORTS.to_vec() } else { args.ports };
    let mut findings = vec![toolchain(course), dependencies(course)];
    findings.extend(ports.iter().map(|port| port_free(*port)));
    findings.push(disk_space(course));
    findings.push(program("curl", "every step's Try it", Verdict::Fail));
    findings.push(program("git", "`cargo workshop reset` and `solution`", Verdict::Warn));
    for (name, what_for) in [
        ("docker", "steps 08 and 09, optional: Jaeger, Prometheus and Grafana in containers"),
        ("prometheus", "step 09, optional: Prometheus itself, and its tests with --ignored"),
        ("promtool", "step 09's exercise 2, which checks your alert with it"),
    ] {
        findings.push(program(name, what_for, Verdict::Warn));
    }
    for finding in &findings {
        let label = match finding.verdict {
            Verdict::Pass => Style::Success.paint("pass"),
            Verdict::Warn => Style::Warning.paint("warn"),
            Verdict::Fail => Style::Failure.paint("fail"),
        };
        println!("{label}  {}", finding.what);
    }
    let count = |verdict| findings.iter().filter(|finding| finding.verdict == verdict).count();
    let (fails, warnings) = (count(Verdict::Fail), count(Verdict::Warn));
    println!("\n{fails} to fix, {warnings} optional or to know about.");
    if own_ports {
        let mut progress = Progress::load(course);
        progress.doctor_ran(fails == 0);
        progress.save()?;
    }
    Ok(if fails == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// rustc against the workspace's `rust-version`.
fn toolchain(course: &Course) -> Finding {
    let manifest = fs::read_to_string(course.root.join("Cargo.toml")).unwrap_or_default();
    let needed = manifest.lines().find_map(|line| {
        let value = line.trim().strip_prefix("rust-version")?.trim().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    });
    let needed = needed.unwrap_or_else(|| "1.0".to_string());
    let Some(said) = version_of("rustc") else {
        return fail("rustc not found: install Rust from https://rustup.rs");
    };
    let have = said.split_whitespace().nth(1).unwrap_or_default().to_string();
    match numbers(&have) >= numbers(&needed) {
        true => pass(format!("Rust {have} (the workshop needs {needed} or newer)")),
        false => fail(format!(
            "Rust {have} is older than the {needed} the workshop needs: `rustup update`"
        )),
    }
}

fn numbers(version: &str) -> Vec<u32> {
    version.split(['.', '-']).map_while(|part| part.parse().ok()).collect()
}

/// Every dependency downloaded: cargo can then build any step offline.
fn dependencies(course: &Course) -> Finding {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // This laptop's platform only: Windows' crates are not needed on a Mac.
    let host = version_details("rustc").and_then(|said| {
        said.lines().find_map(|line| line.strip_prefix("host: ").map(str::to_string))
    });
    let mut fetch = Command::new(cargo);
    fetch.args(["fetch", "--offline", "--locked", "--quiet"]);
    if let Some(host) = &host {
        fetch.args(["--target", host]);
    }
    let fetched = fetch.current_dir(&course.root).output();
    match fetched {
        Ok(output) if output.status.success() => {
            pass("every dependency is downloaded: the steps build offline")
        }
        _ => fail(
            "some dependencies are not downloaded yet: while online, run `cargo fetch`, \
             then `cargo build --workspace`",
        ),
    }
}

fn port_free(port: u16) -> Finding {
    if ports::is_free(port) {
        return pass(format!("port {port} is free"));
    }
    let holder = ports::holder(port).map(|who| format!(" ({who})")).unwrap_or_default();
    fail(format!(
        "port {port} is in use{holder}: a step cannot listen on it. A step still running? \
         Ctrl-C it in its terminal, or stop that program"
    ))
}

fn disk_space(course: &Course) -> Finding {
    let target = course.root.join("target");
    let built = disk::built(&target);
    let needed = disk::FULL_BUILD.saturating_sub(built);
    let Some(free) = disk::free(&course.root) else {
        return warn(format!(
            "cannot tell the free disk space here; a full build and test run takes about {}",
            disk::gigabytes(disk::FULL_BUILD)
        ));
    };
    let said = match needed {
        0 => format!(
            "{} free; target/ holds a whole build ({})",
            disk::gigabytes(free),
            disk::gigabytes(built)
        ),
        _ => format!(
            "{} free; building and testing every step needs about {} more (target/ has {})",
            disk::gigabytes(free),
            disk::gigabytes(needed),
            disk::gigabytes(built)
        ),
    };
    if free >= needed + disk::MARGIN {
        pass(said)
    } else if free >= needed {
        warn(format!("{said}: that is tight, free some space"))
    } else {
        fail(format!("{said}: free some space first"))
    }
}

/// A program on PATH, by what `<name> --version` says; `what_for` says who
/// needs it.
fn program(name: &str, what_for: &str, missing: Verdict) -> Finding {
    match version_of(name) {
        Some(said) => pass(format!("{said} (for {what_for})")),
        None => Finding {
            verdict: missing,
            what: format!("{name} not found (for {what_for}): install it before the day"),
        },
    }
}

fn version_details(program: &str) -> Option<String> {
    let output = Command::new(program).arg("-vV").output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn version_of(program: &str) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    let first = said.lines().find(|line| !line.trim().is_empty())?;
    // `curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/…` says enough in its start.
    let words: Vec<&str> = first.split(" (").next()?.split_whitespace().take(3).collect();
    output.status.success().then(|| words.join(" ").trim_end_matches(',').to_string())
}
