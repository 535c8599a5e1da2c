//! The hints beyond what a check says. A failing check's message is hint 1:
//! what a client still sees wrong. The next ones are in
//! `solutions/<step>/hints.md`, read without building anything:
//!
//! ```markdown
//! ## exercise_2_a_success_rate_over_a_window
//!
//! ### Where to look
//!
//! Where in the code, and which type helps (hint 2).
//!
//! ### The approach
//!
//! Nearly how to do it (hint 3).
//! ```
//!
//! A `## ` heading is a check's name, as in tests/exercises.rs; each `### `
//! under it is the next hint, in order.

use std::fs;
use std::path::PathBuf;

use crate::course::{Course, Exercise, Step};

/// One hint: its heading and its text.
pub struct Hint {
    pub title: String,
    pub text: String,
}

/// The hints file of `step`.
pub fn file(course: &Course, step: &Step) -> PathBuf {
    course.root.join("solutions").join(&step.folder).join("hints.md")
}

/// The hints after the check's own for `exercise`, in order (hint 2 first);
/// none if the file or its section is missing.
pub fn beyond_the_check(course: &Course, step: &Step, exercise: &Exercise) -> Vec<Hint> {
    let text = fs::read_to_string(file(course, step)).unwrap_or_default();
    parse(&text)
        .into_iter()
        .find(|(check, _)| *check == exercise.test())
        .map(|(_, hints)| hints)
        .unwrap_or_default()
}

/// Every section of a hints file: the check it is for, and its hints.
pub fn parse(text: &str) -> Vec<(String, Vec<Hint>)> {
    let mut sections: Vec<(String, Vec<Hint>)> = Vec::new();
    for line in text.lines() {
        if let Some(check) = line.strip_prefix("## ") {
            sections.push((check.trim().to_string(), Vec::new()));
        } else if let Some(title) = line.strip_prefix("### ") {
            if let Some((_, hints)) = sections.last_mut() {
                hints.push(Hint { title: title.trim().to_string(), text: String::new() });
            }
        } else if let Some(hint) = sections.last_mut().and_then(|(_, hints)| hints.last_mut()) {
            hint.text.push_str(line);
            hint.text.push('\n');
        }
    }
    for (_, hints) in &mut sections {
        hints.iter_mut().for_each(|hint| hint.text = hint.text.trim().to_string());
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_heading_under_a_check_is_its_next_hint() {
        let text = "# Hints\n\nintro\n\n## exercise_1_a\n\n### Where\n\nLook here.\n\n### How\n\n\
                    Do this,\nthen that.\n\n## exercise_2_b\n\n### Where\n\nThere.\n";
        let sections = parse(text);
        assert_eq!(sections.len(), 2);
        let (check, hints) = &sections[0];
        assert_eq!(check, "exercise_1_a");
        let texts: Vec<(&str, &str)> =
            hints.iter().map(|hint| (hint.title.as_str(), hint.text.as_str())).collect();
        assert_eq!(texts, [("Where", "Look here."), ("How", "Do this,\nthen that.")]);
        assert_eq!(sections[1].1.len(), 1);
    }
}
