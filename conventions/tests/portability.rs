//! Learners bring Windows laptops too, and `cargo build --workspace` is the
//! README's preparation for the day: every package of the workspace must
//! build on Windows. Unix-only code (signals, process groups, file
//! descriptors) is fine where it sits behind `#[cfg(unix)]`, with a
//! fallback for the others; this check finds it where it does not.
//!
//! It reads the code as text, simply but carefully: comments and string
//! literals are left out, and an attribute `#[cfg(…)]` whose condition is
//! false on Windows (`unix`, `not(windows)`, `all(unix, …)`, …) covers the
//! next item, statement or block, `#![cfg(…)]` a whole file, and
//! `#[cfg(…)] mod name;` the file of that module. What it cannot see: a
//! function defined behind `#[cfg(unix)]` and called outside it; the
//! compiler on Windows does.

use std::fs;
use std::path::{Path, PathBuf};

/// What exists only on Unix. (`process_group` and `pre_exec`: methods of
/// `std`'s and tokio's `Command` that only Unix has.)
const UNIX_ONLY: [&str; 7] = [
    "std::os::unix",
    "std::os::fd",
    "tokio::signal::unix",
    "libc::",
    "nix::",
    ".process_group(",
    ".pre_exec(",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The members of the root Cargo.toml.
fn workspace_members() -> Vec<String> {
    let manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let (_, list) = manifest.split_once("members = [").expect("a members list");
    let (list, _) = list.split_once(']').unwrap();
    list.lines()
        .map(|line| line.split('#').next().unwrap().trim().trim_end_matches(',').trim_matches('"'))
        .filter(|member| !member.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every `.rs` file under `folder`, but for build output.
fn rust_files(folder: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    for path in entries.filter_map(|entry| Some(entry.ok()?.path())) {
        if path.is_dir() && path.file_name().is_some_and(|name| name != "target") {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn unix_only_code_is_behind_cfg_unix_in_every_package() {
    let root = workspace_root();
    let mut files = Vec::new();
    for member in workspace_members() {
        rust_files(&root.join(&member), &mut files);
    }
    assert!(files.len() > 50, "found only {} .rs files in the workspace", files.len());
    let unix_only_files = unix_only_module_files(&files);
    let mut found = Vec::new();
    for file in files.iter().filter(|file| !unix_only_files.contains(file)) {
        let text = fs::read_to_string(file).unwrap();
        for (line, what) in unguarded_unix_only_code(&text) {
            let shown = file.strip_prefix(&root).unwrap_or(file).display();
            found.push(format!("{shown}:{line}: {what}"));
        }
    }
    assert!(
        found.is_empty(),
        "Unix-only code outside `#[cfg(unix)]`: the workspace would not build on Windows, \
         where learners run `cargo build --workspace` too. Put it behind `#[cfg(unix)]`, with \
         a `#[cfg(not(unix))]` fallback (or a message at run time saying it needs Unix):\n{}",
        found.join("\n")
    );
}

/// Where `text` uses Unix-only code outside a `cfg` that leaves it out on
/// Windows: (line, what).
fn unguarded_unix_only_code(text: &str) -> Vec<(usize, &'static str)> {
    let code = without_comments_and_strings(text);
    if code.trim_start().starts_with("#![") && first_inner_cfg_leaves_out_windows(&code) {
        return Vec::new();
    }
    let guarded = guarded_ranges(&code);
    let mut found = Vec::new();
    for what in UNIX_ONLY {
        for (at, _) in code.match_indices(what) {
            // `nix::` and `libc::` as paths of their own, not `foonix::`.
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') && !what.starts_with('.') {
                continue;
            }
            if !guarded.iter().any(|range| range.contains(&at)) {
                found.push((code[..at].lines().count().max(1), what));
            }
        }
    }
    found.sort();
    found
}

/// Whether the file's inner attributes (`#![…]`, at its top) hold a `cfg`
/// that leaves it out on Windows.
fn first_inner_cfg_leaves_out_windows(code: &str) -> bool {
    let mut rest = code.trim_start();
    while let Some(after) = rest.strip_prefix("#![") {
        let end = closing(after, 0, '[', ']').unwrap_or(after.len());
        if let Some(condition) = after[..end].trim().strip_prefix("cfg(")
            && on_windows(condition.trim_end_matches(')')) == Some(false)
        {
            return true;
        }
        rest = after[end..].trim_start_matches(']').trim_start();
    }
    false
}

/// The byte ranges of `code` covered by an attribute `#[cfg(…)]` that is
/// false on Windows: from the attribute to the end of what follows it.
fn guarded_ranges(code: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    for (at, _) in code.match_indices("#[cfg(") {
        let condition_at = at + "#[cfg(".len();
        let Some(end) = closing(code, condition_at, '(', ')') else { continue };
        if on_windows(&code[condition_at..end]) != Some(false) {
            continue;
        }
        ranges.push(at..end_of_what_follows(code, end));
    }
    ranges
}

/// Where the item, statement, block or field after the attribute whose
/// condition closes at `condition_end` ends: at its `;` or `,`, at the `}`
/// that closes its first block (not for a `let`, which ends at its `;`), or
/// where the brackets around it close.
fn end_of_what_follows(code: &str, condition_end: usize) -> usize {
    let start = condition_end + code[condition_end..].find(']').map_or(0, |at| at + 1);
    let is_let = code[start..].trim_start().starts_with("let ");
    // `<` and `>` of generics, so that `impl<A, B>` does not end at its `,`.
    let (mut depth, mut angles) = (0i32, 0i32);
    let mut previous = ' ';
    for (offset, c) in code[start..].char_indices() {
        let at = start + offset;
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return at;
                }
                if c == '}' && depth == 0 && !is_let {
                    return at + 1;
                }
            }
            '<' => angles += 1,
            '>' if previous != '-' && previous != '=' => angles -= 1,
            ';' if depth == 0 => return at + 1,
            ',' if depth == 0 && angles <= 0 => return at + 1,
            _ => {}
        }
        previous = c;
    }
    code.len()
}

/// Whether a `cfg` condition holds on Windows: `Some(false)` if it surely
/// does not, `None` where it depends on something else (a feature, `test`).
fn on_windows(condition: &str) -> Option<bool> {
    let condition = condition.trim();
    let (name, arguments) = match condition.find('(') {
        Some(open) if condition.ends_with(')') => {
            (condition[..open].trim(), Some(&condition[open + 1..condition.len() - 1]))
        }
        _ => (condition, None),
    };
    match (name, arguments) {
        ("not", Some(inner)) => on_windows(inner).map(|holds| !holds),
        ("all", Some(inner)) => {
            let all: Vec<Option<bool>> = split_top_level(inner).map(on_windows).collect();
            if all.contains(&Some(false)) {
                Some(false)
            } else if all.iter().all(|holds| *holds == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        ("any", Some(inner)) => {
            let any: Vec<Option<bool>> = split_top_level(inner).map(on_windows).collect();
            if any.contains(&Some(true)) {
                Some(true)
            } else if any.iter().all(|holds| *holds == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
        ("unix", None) => Some(false),
        ("windows", None) => Some(true),
        _ => match condition.split_once('=') {
            Some((key, value)) => {
                let value = value.trim().trim_matches('"');
                match key.trim() {
                    "target_family" => Some(value == "windows"),
                    "target_os" => Some(value == "windows"),
                    _ => None,
                }
            }
            None => None,
        },
    }
}

/// `a, all(b, c), d` as `a`, `all(b, c)`, `d`.
fn split_top_level(list: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|part| !part.trim().is_empty())
}

/// Where the bracket opened just before `from` closes.
fn closing(code: &str, from: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 1;
    for (offset, c) in code[from..].char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(from + offset);
            }
        }
    }
    None
}

/// The files of modules declared behind a `cfg` that is false on Windows
/// (`#[cfg(unix)] mod signals;`): all of each is Unix-only.
fn unix_only_module_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut unix_only = Vec::new();
    for file in files {
        let code = without_comments_and_strings(&fs::read_to_string(file).unwrap());
        for range in guarded_ranges(&code) {
            let guarded = &code[range];
            let Some(after_mod) = guarded.split("mod ").nth(1) else { continue };
            let name = after_mod.trim_end_matches([';', ',', ' ', '\n']).trim();
            if !name.chars().all(|c| c.is_alphanumeric() || c == '_') || name.is_empty() {
                continue; // `mod name { … }`: covered by the range already
            }
            let folder = match file.file_stem().and_then(|stem| stem.to_str()) {
                Some("lib" | "main" | "mod") => file.parent().unwrap().to_path_buf(),
                Some(stem) => file.parent().unwrap().join(stem),
                None => continue,
            };
            unix_only.push(folder.join(format!("{name}.rs")));
            unix_only.push(folder.join(name).join("mod.rs"));
        }
    }
    unix_only
}

/// `text` with its comments and the contents of its string and character
/// literals blanked out (newlines kept, so that line numbers stay right).
fn without_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                code.push(' ');
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            loop {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    code.push_str("  ");
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    code.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if i < chars.len() {
                    code.push(blank(chars[i]));
                    i += 1;
                } else {
                    break;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            // r"…", r#"…"#, br"…": no escapes; ends at `"` and as many `#`.
            let opening = rest.iter().position(|&c| c == '"').unwrap() + 1;
            code.extend(std::iter::repeat_n(' ', opening));
            i += opening;
            while i < chars.len() {
                let closes = chars[i] == '"'
                    && chars[i + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes;
                if closes {
                    code.extend(std::iter::repeat_n(' ', 1 + hashes));
                    i += 1 + hashes;
                    break;
                }
                code.push(blank(chars[i]));
                i += 1;
            }
        } else if chars[i] == '"' {
            code.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let skip = if chars[i] == '\\' { 2 } else { 1 };
                for c in chars[i..].iter().take(skip) {
                    code.push(blank(*c));
                }
                i += skip;
            }
            code.push(' ');
            i += 1;
        } else if chars[i] == '\'' {
            // A character literal ('a', '\n', '\''), or a lifetime ('a).
            let length = match rest.get(1) {
                Some('\\') => rest.iter().skip(3).position(|&c| c == '\'').map(|p| p + 4),
                Some(_) if rest.get(2) == Some(&'\'') => Some(3),
                _ => None,
            };
            match length {
                Some(length) => {
                    code.extend(std::iter::repeat_n(' ', length));
                    i += length;
                }
                None => {
                    code.push('\'');
                    i += 1;
                }
            }
        } else {
            code.push(chars[i]);
            i += 1;
        }
    }
    code
}

/// The number of `#` of a raw string starting here (`r"`, `r#"`, `br"`).
fn raw_string_start(rest: &[char]) -> Option<usize> {
    let after_prefix = match rest {
        ['b', 'r', ..] => &rest[2..],
        ['r', ..] => &rest[1..],
        _ => return None,
    };
    let hashes = after_prefix.iter().take_while(|&&c| c == '#').count();
    (after_prefix.get(hashes) == Some(&'"')).then_some(hashes)
}

mod scanner {
    use super::*;

    fn lines(text: &str) -> Vec<usize> {
        unguarded_unix_only_code(text).into_iter().map(|(line, _)| line).collect()
    }

    #[test]
    fn finds_unix_only_code_anywhere_outside_cfg_unix() {
        let text = "use std::os::unix::process::CommandExt;\n\
                    fn f(c: &mut Command) {\n    c.process_group(0);\n}\n\
                    #[cfg(not(unix))]\nfn g() { libc::kill(1, 2); }\n\
                    #[cfg(any(unix, test))]\nuse nix::sys;\n";
        assert_eq!(lines(text), [1, 3, 6, 8]);
    }

    #[test]
    fn leaves_out_what_cfg_unix_covers() {
        let text = "#[cfg(unix)]\nuse std::os::unix::process::CommandExt;\n\
                    #[cfg(unix)]\n#[test]\nfn f() {\n    let x = [1, 2];\n    libc::kill(1, 2);\n}\n\
                    fn g(c: &mut Command) {\n    #[cfg(unix)]\n    c.process_group(0);\n\
                    #[cfg(all(unix, feature = \"x\"))]\n    {\n        nix::a();\n    }\n}\n\
                    #[cfg(target_os = \"linux\")]\nmod m { use std::os::fd::AsRawFd; }\n\
                    #[cfg(unix)]\nuse std::os::unix::{a, b};\n";
        assert_eq!(lines(text), Vec::<usize>::new());
    }

    #[test]
    fn a_cfg_covers_only_what_follows_it() {
        let text = "fn g(c: &mut Command) {\n    #[cfg(unix)]\n    c.process_group(0);\n    \
                    c.process_group(0);\n}\n\
                    struct S {\n    #[cfg(unix)]\n    a: u8,\n    b: std::os::fd::RawFd,\n}\n";
        assert_eq!(lines(text), [4, 9]);
    }

    #[test]
    fn comments_and_strings_are_not_code() {
        let text = "// use std::os::unix;\n/* libc:: /* nested */ nix:: */\n\
                    const A: &str = \"std::os::unix\";\nconst B: &str = r#\"tokio::signal::unix \"x\"\"#;\n\
                    fn f<'a>(x: &'a str) -> char { '\\'' }\nuse libc::c_int;\n";
        assert_eq!(lines(text), [6]);
    }

    #[test]
    fn an_inner_cfg_covers_the_whole_file() {
        assert_eq!(lines("#![cfg(unix)]\nuse libc::c_int;\n"), Vec::<usize>::new());
    }
}
