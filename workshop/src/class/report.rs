//! What a learner's laptop sends to the class, and the limits both sides
//! hold it to. The learner's side tidies what it sends to fit; the class
//! refuses whatever does not, whole, so a bad request changes nothing.

use serde::{Deserialize, Serialize};

use crate::progress::Outcome;

/// A name on the class's page: long enough for "Firstname Lastname".
pub const NAME_CHARS: usize = 32;
/// A check's first line, as the page shows it.
pub const HINT_CHARS: usize = 200;
/// Checks in one report: every exercise of the course (23 today) fits.
pub const CHECKS_PER_REPORT: usize = 64;
/// A report's body: 64 checks with the longest hints fit with room to spare.
pub const BODY_BYTES: usize = 128 * 1024;
/// The class code's letters: no 0/O, 1/I/L, that a projector blurs.
pub const CODE_LETTERS: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const CODE_LENGTH: usize = 8;

/// The body of `PUT /api/learners/{seat}`: who the learner is, and the
/// latest check of the exercises whose results the class has not had yet
/// (every exercise checked so far, when they join).
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub name: String,
    #[serde(default)]
    pub checks: Vec<CheckReport>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// The step's folder, `07-circuit-breaker`.
    pub step: String,
    /// The exercise's name, `a_success_rate_over_a_window`.
    pub exercise: String,
    pub outcome: Outcome,
    /// A failed check's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// How long before sending the check ran: two laptops' clocks need not
    /// agree, so no clock time crosses the network.
    pub seconds_ago: u64,
}

/// What is wrong with `name` as a name on the page, if anything.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the name is empty: give the one you want the instructor to see".into());
    }
    if name != name.trim() {
        return Err("the name starts or ends with a space".into());
    }
    check_text("the name", name, NAME_CHARS)
}

/// Text the page shows: at most `most` characters, none that would move
/// or hide what is around it (control and direction characters).
pub fn check_text(what: &str, text: &str, most: usize) -> Result<(), String> {
    if text.chars().count() > most {
        return Err(format!("{what} is longer than {most} characters"));
    }
    match text.chars().find(|c| is_unprintable(*c)) {
        Some(c) => Err(format!("{what} has a control character (U+{:04X})", u32::from(c))),
        None => Ok(()),
    }
}

/// Control characters, and the invisible ones that reorder or hide text
/// (a name written right to left over its neighbours, say).
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}')
        || c == '\u{FEFF}'
}

/// A check's first line as the class takes it: unprintable characters as
/// spaces, and cut to fit.
pub fn tidy_hint(line: &str) -> String {
    let line: String = line.chars().map(|c| if is_unprintable(c) { ' ' } else { c }).collect();
    let line = line.trim();
    match line.chars().count() > HINT_CHARS {
        true => line.chars().take(HINT_CHARS - 1).collect::<String>() + "…",
        false => line.to_string(),
    }
}

/// A class code as typed: any case, with or without its dash or spaces.
pub fn normalize_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// A code as shown: `KQXR-47MW`.
pub fn show_code(code: &str) -> String {
    let (first, second) = code.split_at(code.len() / 2);
    format!("{first}-{second}")
}

/// A seat: 32 hexadecimal digits, drawn at random when a learner joins.
pub fn is_seat(seat: &str) -> bool {
    seat.len() == 32 && seat.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_and_short() {
        assert!(check_name("Zoë <b>Ann</b> & co").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" Ann").is_err());
        assert!(check_name("Ann\u{1b}[31m").is_err());
        assert!(check_name("Ann\u{202E}nnA").is_err());
        assert!(check_name(&"a".repeat(NAME_CHARS)).is_ok());
        assert!(check_name(&"é".repeat(NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn a_hint_is_tidied_to_fit() {
        assert_eq!(tidy_hint("a\tb\u{7}"), "a b");
        let long = tidy_hint(&"x".repeat(500));
        assert_eq!(long.chars().count(), HINT_CHARS);
        assert!(check_text("a hint", &long, HINT_CHARS).is_ok());
    }

    #[test]
    fn a_code_is_typed_any_way() {
        assert_eq!(normalize_code("kqxr-47mw"), "KQXR47MW");
        assert_eq!(show_code("KQXR47MW"), "KQXR-47MW");
    }
}
