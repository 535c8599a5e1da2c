//! The class's page: each learner against the course's exercises, those
//! stuck on top, and a count per exercise of how many are done. The page
//! (`class.html`) asks for the board again (`board`) each time it changes,
//! and at least every few seconds, so that "3 min ago" stays true.
//!
//! Every piece of text that came from outside goes through [`escape`]: a
//! name with HTML in it shows as those characters. The page also forbids
//! inline scripts (Content-Security-Policy, `server.rs`), so escaping has a
//! second line behind it.

use std::cmp::Reverse;
use std::fmt::Write;
use std::time::Duration;

use super::outline::Outline;
use super::room::{Learner, Room};
use crate::progress::Outcome;

const SHELL: &str = include_str!("class.html");
pub const STYLE: &str = include_str!("class.css");
pub const SCRIPT: &str = include_str!("class.js");
/// The stuck listed above the table, longest first: who to go and see next.
const STUCK_LISTED: usize = 5;

/// What the page's top says besides the board.
pub struct Heading<'a> {
    /// The command a learner types to join, code included only for a page
    /// opened on the instructor's laptop (the one on the projector).
    pub join: &'a str,
    /// Set when only this laptop can reach the class: what to do about it.
    pub local_only: Option<&'a str>,
}

/// The whole page, with the board as it is now.
pub fn page(heading: &Heading, board: &str, version: u64) -> String {
    let notice = match heading.local_only {
        Some(warning) => format!(r#"<p class="warning">{}</p>"#, escape(warning)),
        None => String::new(),
    };
    // Trusted parts first and the board last, so nothing in the board is
    // ever taken for a placeholder.
    SHELL
        .replace("{{version}}", &version.to_string())
        .replace("{{join}}", &escape(heading.join))
        .replace("{{notice}}", &notice)
        .replace("{{board}}", board)
}

/// The board: a row per learner, a column per exercise.
pub fn board(room: &Room, outline: &Outline, now: u64, stuck_after: Duration) -> String {
    let mut learners: Vec<(&Learner, Option<Duration>)> =
        room.learners().map(|learner| (learner, learner.stuck(now, stuck_after))).collect();
    // The stuck first, longest first; then everyone by name.
    learners.sort_by_cached_key(|(learner, stuck)| {
        (stuck.is_none(), Reverse(*stuck), learner.name.to_lowercase())
    });
    let stuck: Vec<_> = learners.iter().filter(|(_, stuck)| stuck.is_some()).collect();

    let mut html = String::new();
    let _ = write!(html, r#"<p class="summary">{} joined"#, plural(learners.len(), "learner"));
    if !stuck.is_empty() {
        let after = match stuck_after.as_secs() % 60 {
            0 => format!("{} min", stuck_after.as_secs() / 60),
            _ => humantime::format_duration(stuck_after).to_string(),
        };
        let _ =
            write!(html, r#" · <span class="stuck">{} stuck for over {after}</span>"#, stuck.len());
    }
    html.push_str("</p>\n");
    if learners.is_empty() {
        html.push_str(r#"<p class="empty">No one has joined yet.</p>"#);
        return html;
    }
    // Who to go and see, and about what, in words a projector shows whole.
    if !stuck.is_empty() {
        html.push_str(r#"<ol class="stuck-list">"#);
        for (learner, stuck_for) in stuck.iter().take(STUCK_LISTED) {
            let Some((step, exercise, standing)) = learner.latest() else { continue };
            let _ = write!(
                html,
                r#"<li><span class="badge">{} min</span> <strong>{}</strong> on {}: <span class="hint">{}</span></li>"#,
                stuck_for.unwrap_or_default().as_secs() / 60,
                escape(&learner.name),
                escape(&outline.short_name(step, exercise)),
                escape(standing.hint.as_deref().unwrap_or("failing"))
            );
        }
        if stuck.len() > STUCK_LISTED {
            let _ = write!(
                html,
                "<li>and {} more, on top of the table</li>",
                stuck.len() - STUCK_LISTED
            );
        }
        html.push_str("</ol>\n");
    }
    html.push_str("<table>\n");
    head(&mut html, outline, room);
    html.push_str("<tbody>\n");
    for (learner, stuck) in &learners {
        row(&mut html, outline, learner, *stuck, now);
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The steps, their exercises, and how many are done of each: the pace of
/// the room, above everyone's row.
fn head(html: &mut String, outline: &Outline, room: &Room) {
    html.push_str(r#"<thead><tr><th rowspan="2" class="name">Learner</th>"#);
    for step in &outline.steps {
        let _ = write!(
            html,
            r#"<th colspan="{}" class="step" title="{}">{:02}</th>"#,
            step.exercises.len(),
            escape(&step.folder),
            step.number
        );
    }
    html.push_str(
        r#"<th rowspan="3" class="last">Last check</th><th rowspan="3" class="now">Now</th></tr>"#,
    );
    html.push_str("\n<tr>");
    for (step, number, name) in outline.columns() {
        let title = format!("{} exercise {number}: {}", step.folder, name.replace('_', " "));
        let (title, column) = (escape(&title), escape(&format!("{} {name}", step.folder)));
        let _ = write!(
            html,
            r#"<th class="exercise" title="{title}" data-exercise="{column}">{number}</th>"#
        );
    }
    html.push_str("</tr>\n");
    html.push_str(r#"<tr class="counts"><th class="name">Done</th>"#);
    for (step, _, name) in outline.columns() {
        let done = room.learners().filter(|learner| {
            let standing = learner.standing(&step.folder, name);
            standing.is_some_and(|standing| standing.outcome == Outcome::Passed)
        });
        let _ = write!(html, r#"<td class="count">{}</td>"#, done.count());
    }
    html.push_str("</tr></thead>\n");
}

fn row(html: &mut String, outline: &Outline, learner: &Learner, stuck: Option<Duration>, now: u64) {
    let class = if stuck.is_some() { "learner stuck" } else { "learner" };
    let _ = write!(html, r#"<tr class="{class}"><th class="name">{}</th>"#, escape(&learner.name));
    // A cell is a mark and a class, no more: a room of 300 is 7,000 cells.
    // The words of a failing check are under Now, for the latest one.
    for (step, _, name) in outline.columns() {
        html.push_str(match learner.standing(&step.folder, name) {
            None => r#"<td class="untried">·</td>"#,
            Some(standing) if standing.outcome == Outcome::Passed => r#"<td class="done">✓</td>"#,
            Some(_) => r#"<td class="failing">✗</td>"#,
        });
    }
    let last = match learner.latest() {
        Some((_, _, standing)) => ago(now.saturating_sub(standing.checked_at)),
        None => format!("joined {}", ago(now.saturating_sub(learner.joined_at))),
    };
    let _ = write!(html, r#"<td class="last">{last}</td>"#);
    html.push_str(r#"<td class="now">"#);
    if let Some(stuck) = stuck {
        let _ = write!(html, r#"<span class="badge">stuck {} min</span> "#, stuck.as_secs() / 60);
    }
    if let Some((step, exercise, standing)) = learner.latest() {
        let short = outline.short_name(step, exercise);
        match (standing.outcome, &standing.hint) {
            (Outcome::Passed, _) => {
                let _ = write!(html, "{} done", escape(&short));
            }
            (Outcome::Failed, hint) => {
                let hint = hint.as_deref().unwrap_or("");
                let _ = write!(
                    html,
                    r#"{} <span class="hint">{}</span>"#,
                    escape(&short),
                    escape(hint)
                );
            }
        }
    }
    html.push_str("</td></tr>\n");
}

fn plural(count: usize, what: &str) -> String {
    match count {
        1 => format!("1 {what}"),
        _ => format!("{count} {what}s"),
    }
}

fn ago(seconds: u64) -> String {
    match seconds {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86400 => format!("{} h ago", seconds / 3600),
        _ => plural((seconds / 86400) as usize, "day") + " ago",
    }
}

/// `text` as HTML shows it, in an element or in a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_shown_as_text() {
        assert_eq!(
            escape(r#"<b a="1">'&'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn the_board_never_becomes_a_placeholder() {
        let heading = Heading { join: "join", local_only: None };
        let page = page(&heading, "{{join}}", 1);
        assert!(page.contains("{{join}}"), "{page}");
    }
}
