//! What changes when a person is watching: colour (only on a terminal, and
//! never with NO_COLOR set), a pager for long text, and questions.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

#[derive(Clone, Copy)]
pub enum Style {
    Success,
    Failure,
    Warning,
    Dim,
    Bold,
    Added,
    Removed,
    Hunk,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Success | Style::Added => "32",
            Style::Failure | Style::Removed => "31",
            Style::Warning => "33",
            Style::Dim => "2",
            Style::Bold => "1",
            Style::Hunk => "36",
        }
    }

    /// `text` in this style, if standard output is a terminal.
    pub fn paint(self, text: &str) -> String {
        self.paint_if(text, colour(io::stdout().is_terminal()))
    }

    /// `text` in this style, if standard error is a terminal.
    pub fn paint_err(self, text: &str) -> String {
        self.paint_if(text, colour(io::stderr().is_terminal()))
    }

    fn paint_if(self, text: &str, colour: bool) -> String {
        match colour {
            true => format!("\x1b[{}m{text}\x1b[0m", self.code()),
            false => text.to_string(),
        }
    }
}

fn colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

pub fn is_interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Asks a yes/no question on the terminal. Without one nobody can answer,
/// so `--yes` is the way to say it: the error says so.
pub fn confirm(question: &str) -> Result<bool> {
    if !is_interactive() {
        return Err(Error::new(format!(
            "{question} Nobody can answer here (no terminal): add --yes"
        )));
    }
    print!("{question} [y/N] ");
    io::stdout().flush().ok();
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).ok();
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// `text` with each line wrapped at word boundaries to fit `width`, every
/// line after `indent`: a check's message is one long line.
pub fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut wrapped = String::new();
    for line in text.lines() {
        let mut current = indent.to_string();
        for word in line.split(' ') {
            if current.len() > indent.len() && current.len() + 1 + word.len() > width {
                wrapped.push_str(current.trim_end());
                wrapped.push('\n');
                current = indent.to_string();
            } else if current.len() > indent.len() {
                current.push(' ');
            }
            current.push_str(word);
        }
        wrapped.push_str(current.trim_end());
        wrapped.push('\n');
    }
    wrapped
}

/// Prints `text`, through a pager when it is longer than a screen and a
/// person reads it: `$PAGER`, or `less`, where there is one; straight out
/// otherwise (Windows has no `less`, and a pipe needs none).
pub fn page(text: &str) {
    if is_interactive() && text.lines().count() > 40 {
        let pager = std::env::var("PAGER").unwrap_or_else(|_| "less -R -F -X".to_string());
        let mut words = pager.split_whitespace();
        if let Some(program) = words.next() {
            let spawned = Command::new(program).args(words).stdin(Stdio::piped()).spawn();
            if let Ok(mut child) = spawned {
                if let Some(mut input) = child.stdin.take() {
                    // A reader who quits early closes the pipe: not an error.
                    let _ = input.write_all(text.as_bytes());
                }
                let _ = child.wait();
                return;
            }
        }
    }
    print!("{text}");
}
