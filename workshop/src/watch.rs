//! Notices when a file of a step is saved, by looking at the files' sizes
//! and modification times every few hundred milliseconds: no file-system
//! events to subscribe to, so it works the same on every system.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(300);

/// Folders whose files are the step's output, not its code: step 10
/// writes its databases to data/ while it runs.
const NOT_CODE: [&str; 2] = ["target", "data"];

type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

pub struct Watcher {
    folder: PathBuf,
    seen: Snapshot,
}

impl Watcher {
    pub fn new(folder: &Path) -> Watcher {
        Watcher { folder: folder.to_path_buf(), seen: snapshot(folder) }
    }

    /// Waits until a file is saved, then until the files stay the same for
    /// one more look: an editor that writes several files, or one in
    /// steps, starts one run, not several.
    pub fn wait_for_save(&mut self) {
        loop {
            std::thread::sleep(POLL);
            let now = snapshot(&self.folder);
            if now != self.seen {
                self.seen = now;
                break;
            }
        }
        loop {
            std::thread::sleep(POLL);
            let now = snapshot(&self.folder);
            if now == self.seen {
                return;
            }
            self.seen = now;
        }
    }
}

fn snapshot(folder: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(metadata) = entry.metadata() else { continue };
            if metadata.is_dir() {
                if !name.starts_with('.') && !NOT_CODE.contains(&name.as_str()) {
                    folders.push(entry.path());
                }
            } else {
                let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.insert(entry.path(), (modified, metadata.len()));
            }
        }
    }
    files
}
