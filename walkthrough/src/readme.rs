//! What a README's walk-through is: the code blocks of its "Run" and "Try it"
//! sections, in order, read as a learner reads them.
//!
//! - A ```sh block holds commands, one per line, pasted in order.
//! - The code block right after it (```json, ```text, ...) is what they print.
//! - `<!-- walkthrough: ... -->`, invisible once rendered, says what the prose
//!   around a block asks of the learner (see `Directive`).
//!
//! Every other block of those sections must be marked, so that nothing is
//! skipped without a reason the summary can print.

use std::time::Duration;

/// One thing the learner does or looks at, with the README line it is on.
#[derive(Debug)]
pub struct Item {
    pub line: usize,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    /// Commands pasted into a terminal, and what the README says they print.
    Commands {
        commands: Vec<String>,
        expected: Option<String>,
        /// Run them again until they print that, for at most this long: for
        /// the README's "a moment later" (eventual consistency).
        repeat_within: Option<Duration>,
        /// The lines shown are among those printed, in any order: an
        /// abridged listing whose order varies (`/metrics`).
        any_order: bool,
    },
    /// Lines that the running services' terminals show (in any order) by the
    /// time the learner looks, at most `within` after the last commands.
    TerminalShows { expected: String, within: Duration },
    /// Ctrl-C in the terminal of a service started by an earlier block: its
    /// name is what followed `--` in that command, or `step` for the whole step.
    CtrlC { name: String },
    /// A block that cannot run unattended (a browser, Docker), and why.
    NotRun { why: String },
    /// The time a learner takes to read the prose, where what happens next
    /// depends on it (a cache that expires in a second).
    Pause(Duration),
}

/// How long a terminal's lines may take to show, unless the README says.
const TERMINAL_WITHIN: Duration = Duration::from_secs(30);

pub fn parse(text: &str) -> Result<Vec<Item>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut in_walkthrough = false;
    let mut directive: Option<(usize, Directive)> = None;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let number = index + 1;
        index += 1;
        if let Some(title) = line.strip_prefix("## ") {
            in_walkthrough = title.starts_with("Run") || title.starts_with("Try it");
            continue;
        }
        // Fences may be indented, inside a list item.
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            let (body, after) = read_block(&lines, index, number)?;
            index = after;
            if !in_walkthrough {
                continue;
            }
            let language = fence.trim();
            let action = match directive.take() {
                Some((_, Directive::NotRun(why))) => {
                    // A command's output block goes with it, unrun.
                    if language == "sh"
                        && let Some((_, after)) = output_block(&lines, index, number)?
                    {
                        index = after;
                    }
                    Action::NotRun { why }
                }
                Some((_, Directive::TerminalShows(within))) => Action::TerminalShows {
                    expected: body,
                    within: within.unwrap_or(TERMINAL_WITHIN),
                },
                Some((_, how @ (Directive::RepeatWithin(_) | Directive::AnyOrder)))
                    if language == "sh" =>
                {
                    let Some((expected, after)) = output_block(&lines, index, number)? else {
                        return Err(format!(
                            "line {number}: `{how:?}` needs the output block after the commands"
                        ));
                    };
                    index = after;
                    Action::Commands {
                        commands: commands(&body),
                        expected: Some(expected),
                        repeat_within: match how {
                            Directive::RepeatWithin(within) => Some(within),
                            _ => None,
                        },
                        any_order: matches!(how, Directive::AnyOrder),
                    }
                }
                Some((line, other)) => {
                    return Err(format!(
                        "line {line}: `{other:?}` cannot go before a ```{language} block"
                    ));
                }
                None if language == "sh" => {
                    let expected = output_block(&lines, index, number)?;
                    if let Some((_, after)) = expected {
                        index = after;
                    }
                    Action::Commands {
                        commands: commands(&body),
                        expected: expected.map(|(text, _)| text),
                        repeat_within: None,
                        any_order: false,
                    }
                }
                None => {
                    return Err(format!(
                        "line {number}: a ```{language} block that is no command's output; \
                         mark it `<!-- walkthrough: terminal shows -->` or \
                         `<!-- walkthrough: not run: <why> -->`"
                    ));
                }
            };
            items.push(Item { line: number, action });
            continue;
        }
        if !in_walkthrough {
            continue;
        }
        if let Some(words) =
            line.trim().strip_prefix("<!-- walkthrough:").and_then(|rest| rest.strip_suffix("-->"))
        {
            match Directive::parse(words.trim()).map_err(|e| format!("line {number}: {e}"))? {
                Directive::CtrlC(name) => {
                    items.push(Item { line: number, action: Action::CtrlC { name } })
                }
                Directive::Pause(pause) => {
                    items.push(Item { line: number, action: Action::Pause(pause) })
                }
                other => directive = Some((number, other)),
            }
        }
    }
    if let Some((line, directive)) = directive {
        return Err(format!("line {line}: `{directive:?}` has no block after it"));
    }
    Ok(items)
}

/// What a `<!-- walkthrough: ... -->` comment says.
#[derive(Debug)]
enum Directive {
    /// `not run: <why>`
    NotRun(String),
    /// `terminal shows` or `terminal shows within 70s`
    TerminalShows(Option<Duration>),
    /// `repeat within 10s`
    RepeatWithin(Duration),
    /// `any order`
    AnyOrder,
    /// `ctrl-c <name>`
    CtrlC(String),
    /// `pause 2s (why)`
    Pause(Duration),
}

impl Directive {
    fn parse(words: &str) -> Result<Directive, String> {
        if let Some(why) = words.strip_prefix("not run:") {
            return Ok(Directive::NotRun(why.trim().to_string()));
        }
        if let Some(rest) = words.strip_prefix("terminal shows") {
            let within = match rest.trim().strip_prefix("within") {
                Some(duration) => Some(duration_of(duration)?),
                None if rest.trim().is_empty() => None,
                None => {
                    return Err(format!("`{words}`: expected `terminal shows within <duration>`"));
                }
            };
            return Ok(Directive::TerminalShows(within));
        }
        if let Some(duration) = words.strip_prefix("repeat within") {
            return Ok(Directive::RepeatWithin(duration_of(duration)?));
        }
        if words == "any order" {
            return Ok(Directive::AnyOrder);
        }
        if let Some(name) = words.strip_prefix("ctrl-c") {
            return Ok(Directive::CtrlC(name.trim().to_string()));
        }
        if let Some(pause) = words.strip_prefix("pause") {
            // `pause 1s (why)`: the why is for the reader of the source.
            let duration = pause.split_whitespace().next().unwrap_or_default();
            return Ok(Directive::Pause(duration_of(duration)?));
        }
        Err(format!(
            "`{words}` is not a walkthrough directive \
             (not run: <why> | terminal shows [within <duration>] | repeat within <duration> | any order | ctrl-c <name> | pause <duration>)"
        ))
    }
}

fn duration_of(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let seconds = text.strip_suffix('s').and_then(|n| n.parse::<u64>().ok());
    match seconds {
        Some(seconds) if seconds <= 300 => Ok(Duration::from_secs(seconds)),
        _ => Err(format!("`{text}`: a duration is whole seconds, at most 300s, like `70s`")),
    }
}

/// The lines of a block up to its closing fence, and the index after it.
fn read_block(lines: &[&str], from: usize, opened_at: usize) -> Result<(String, usize), String> {
    let Some(length) = lines[from..].iter().position(|line| line.trim_start().starts_with("```"))
    else {
        return Err(format!("line {opened_at}: this block is never closed"));
    };
    let mut body = lines[from..from + length].join("\n");
    body.push('\n');
    Ok((body, from + length + 1))
}

/// The block right after a command block (only blank lines between), unless
/// that is another command block.
fn output_block(
    lines: &[&str],
    from: usize,
    opened_at: usize,
) -> Result<Option<(String, usize)>, String> {
    let mut index = from;
    while index < lines.len() && lines[index].trim().is_empty() {
        index += 1;
    }
    match lines.get(index).and_then(|line| line.trim_start().strip_prefix("```")) {
        Some(language) if !language.trim().is_empty() && language.trim() != "sh" => {
            read_block(lines, index + 1, opened_at).map(Some)
        }
        _ => Ok(None),
    }
}

/// One command per line; a line ending in `\` goes on on the next one.
fn commands(body: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_block_takes_the_block_after_it_as_its_output() {
        let readme = "## Try it\n\n```sh\ncurl http://localhost:3002/\n```\n```json\n{\"name\":\"service 1\"}\n```\n";
        let items = parse(readme).unwrap();
        let [Item { line: 3, action: Action::Commands { commands, expected: Some(expected), .. } }] =
            &items[..]
        else {
            panic!("{items:?}")
        };
        assert_eq!(commands, &["curl http://localhost:3002/"]);
        assert_eq!(expected, "{\"name\":\"service 1\"}\n");
    }

    #[test]
    fn blocks_outside_run_and_try_it_are_not_part_of_the_walkthrough() {
        let readme = "## Goal\n\n```text\nanything\n```\n## Exercises\n\n```sh\ngit diff\n```\n";
        assert!(parse(readme).unwrap().is_empty());
    }

    #[test]
    fn an_unmarked_block_that_is_no_output_is_an_error_naming_its_line() {
        let readme = "## Try it\n\nThe log:\n\n```text\nINFO something\n```\n";
        let error = parse(readme).unwrap_err();
        assert!(error.starts_with("line 5: "), "{error}");
    }

    #[test]
    fn directives_say_what_the_prose_asks() {
        let readme = "## Try it\n\n<!-- walkthrough: not run: needs a browser -->\n```sh\nopen x\n```\n```text\ny\n```\n\
                      <!-- walkthrough: ctrl-c service2 --port 3013 -->\n\
                      <!-- walkthrough: terminal shows within 70s -->\n```text\nINFO stopped\n```\n";
        let items = parse(readme).unwrap();
        assert!(matches!(&items[0].action, Action::NotRun { why } if why == "needs a browser"));
        assert!(
            matches!(&items[1].action, Action::CtrlC { name } if name == "service2 --port 3013")
        );
        assert!(
            matches!(&items[2].action, Action::TerminalShows { within, .. } if within.as_secs() == 70)
        );
    }
}
