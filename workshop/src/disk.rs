//! Disk space: how much is free where the workshop is, and how much its
//! build already takes in target/.

use std::fs;
use std::path::Path;
use std::process::Command;

const GB: u64 = 1_000_000_000;

/// What `cargo build --workspace` and the tests' build leave in target/ on
/// a fresh clone: 6.0 GB, measured on Linux (bench/README.md, "A learner's
/// laptop").
pub const FULL_BUILD: u64 = 6 * GB;
/// Room to spare beyond that: the exercises' checks and step 10's data.
pub const MARGIN: u64 = GB;

/// Free bytes on the disk that holds `folder`: `df` where there is one,
/// PowerShell on Windows. None if neither can tell.
pub fn free(folder: &Path) -> Option<u64> {
    let path = folder.display().to_string();
    if cfg!(windows) {
        let script = format!("(Get-Item -LiteralPath '{}').PSDrive.Free", path.replace('\'', "''"));
        let output =
            Command::new("powershell").args(["-NoProfile", "-Command", &script]).output().ok()?;
        return String::from_utf8_lossy(&output.stdout).trim().parse().ok();
    }
    // POSIX output: a header, then `filesystem blocks used available ...`.
    let output = Command::new("df").args(["-P", "-k", &path]).output().ok()?;
    let table = String::from_utf8_lossy(&output.stdout);
    let available = table.lines().nth(1)?.split_whitespace().nth(3)?;
    available.parse::<u64>().ok().map(|kilobytes| kilobytes * 1024)
}

/// What a build has put in `target`: its profiles' compiled crates,
/// build scripts' output and incremental caches. (Not the programs in
/// target/debug itself: they are hard links to files in deps/.)
pub fn built(target: &Path) -> u64 {
    let profiles = fs::read_dir(target).into_iter().flatten().flatten();
    let profiles = profiles.filter(|entry| entry.path().join(".fingerprint").is_dir());
    let parts = ["deps", "build", "incremental", ".fingerprint"];
    profiles.flat_map(|profile| parts.map(|part| size_of(&profile.path().join(part)))).sum()
}

/// The bytes of every file under `folder`.
fn size_of(folder: &Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else { continue };
        for entry in entries.filter_map(Result::ok) {
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => folders.push(entry.path()),
                Ok(metadata) => total += metadata.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub fn gigabytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / GB as f64)
}
