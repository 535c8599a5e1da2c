//! Does what a command printed match what the README shows?
//!
//! The matching is snapbox's, the conventions of trycmd: `[..]` inside a line
//! stands for any text (a time, an id, a duration), `...` alone on a line for
//! any lines. On a mismatch snapbox renders the difference.
//!
//! One convention is the README's own: `curl -i` output shows only the headers
//! that matter, so the headers the README does not name are left out of what
//! was printed before comparing.

use snapbox::{Assert, IntoData};

/// `Err` holds the difference, ready to print.
pub fn output(actual: &str, expected: &str) -> Result<(), String> {
    let actual = only_headers_shown(&tidy(actual), expected);
    Assert::new()
        .normalize_paths(false)
        .try_eq(Some(&"printed"), actual.into_data(), tidy(expected).into_data())
        .map_err(|error| error.to_string())
}

/// Every line of `expected` is somewhere in `actual`, in any order: a
/// terminal where several services write at once, or an abridged listing.
pub fn lines_among(actual: &str, expected: &str) -> Result<(), String> {
    let mut expected = tidy(expected);
    expected.push_str("...\n");
    Assert::new()
        .normalize_paths(false)
        .try_eq(
            Some(&"the terminals"),
            tidy(actual).into_data().unordered(),
            expected.into_data().unordered(),
        )
        .map_err(|error| error.to_string())
}

/// Line ends as a terminal shows them, and one newline at the end.
fn tidy(text: &str) -> String {
    let mut tidy: String = text.lines().map(|line| format!("{}\n", line.trim_end())).collect();
    if tidy.is_empty() {
        tidy.push('\n');
    }
    tidy
}

/// Drops the header lines of each HTTP response head in `actual` whose
/// name no response head in `expected` shows, and puts the others in the
/// order the README shows them (a server's header order means nothing).
fn only_headers_shown(actual: &str, expected: &str) -> String {
    let shown: Vec<String> = response_heads(expected).filter_map(header_name).collect();
    let position =
        |line: &&str| header_name(line).and_then(|name| shown.iter().position(|s| *s == name));
    let mut kept = String::new();
    let mut head: Vec<&str> = Vec::new();
    let mut in_head = false;
    for line in actual.lines() {
        if in_head && header_name(line).is_some() {
            head.push(line);
            continue;
        }
        head.retain(|line| position(line).is_some());
        head.sort_by_key(|line| position(line));
        for header in head.drain(..) {
            kept.push_str(header);
            kept.push('\n');
        }
        in_head = line.starts_with("HTTP/");
        kept.push_str(line);
        kept.push('\n');
    }
    for header in head.iter().filter(|line| position(line).is_some()) {
        kept.push_str(header);
        kept.push('\n');
    }
    kept
}

/// The lines of every response head (from `HTTP/...` to the blank line).
fn response_heads(text: &str) -> impl Iterator<Item = &str> {
    let mut in_head = false;
    text.lines().filter(move |line| {
        if line.starts_with("HTTP/") {
            in_head = true;
        } else if line.is_empty() {
            in_head = false;
        }
        in_head
    })
}

fn header_name(line: &str) -> Option<String> {
    let (name, _) = line.split_once(':')?;
    let is_token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    is_token.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_stand_for_what_varies() {
        let printed = "service1 | 2026-11-30T10:00:00.1Z  INFO \"GET / HTTP/1.1\" 200 20B 0.2ms\n";
        let shown = "service1 | [..] INFO \"GET / HTTP/1.1\" 200 20B [..]\n";
        assert_eq!(output(printed, shown), Ok(()));
        assert!(output(printed, "service1 | [..] 404 [..]\n").is_err());
    }

    #[test]
    fn headers_the_readme_does_not_show_are_left_out() {
        let printed = "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 96\r\nallow: GET\r\n\
                       content-type: application/problem+json\r\ndate: Mon\r\n\r\n{\"status\":405}";
        let shown = "HTTP/1.1 405 Method Not Allowed\ncontent-type: application/problem+json\nallow: GET\n\n{\"status\":405}\n";
        assert_eq!(output(printed, shown), Ok(()));
        let missing = "HTTP/1.1 405 Method Not Allowed\nretry-after: 5\n\n{\"status\":405}\n";
        assert!(output(printed, missing).is_err());
    }

    #[test]
    fn terminal_lines_match_in_any_order_among_others() {
        let printed = "registry | up\nservice2 | listening\nservice1 | listening\n";
        assert_eq!(lines_among(printed, "service1 | listening\nservice2 | listening\n"), Ok(()));
        let difference = lines_among(printed, "service1 | stopped\n").unwrap_err();
        assert!(difference.contains("service1 | stopped"), "{difference}");
    }
}
