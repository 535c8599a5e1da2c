//! `cargo workshop join URL --name NAME --code CODE`: from now on, each
//! check's result also goes to the instructor's class (`cargo workshop
//! class`), and nothing else does. `cargo workshop leave` stops it.

use std::collections::BTreeSet;
use std::process::ExitCode;

use rand::RngExt;

use crate::class::{self, Joined, Sent};
use crate::course::Course;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The class's address, as the instructor's page shows it: http://192.168.1.20:3100
    url: String,
    /// Your name on the class's page (at most 32 characters)
    #[arg(long)]
    name: String,
    /// The class code the instructor gives (KQXR-47MW)
    #[arg(long)]
    code: String,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let url = class_url(&args.url)?;
    class::check_name(&args.name).map_err(|why| Error::new(format!("{why} (--name)")))?;
    let code = class::normalize_code(&args.code);
    if code.len() != class::CODE_LENGTH {
        return Err(Error::new(format!(
            "a class code is {} letters and digits, like KQXR-47MW: the instructor's page and \
             terminal show it",
            class::CODE_LENGTH
        )));
    }
    // Joining the same class again (another name, a new code) keeps the row.
    let seat = Joined::load(course)
        .filter(|before| before.url == url)
        .map(|before| before.seat)
        .unwrap_or_else(|| format!("{:032x}", rand::rng().random::<u128>()));
    let joined = Joined { url, name: args.name, code, seat, unsent: BTreeSet::new() };

    // The class gets every check so far: where this learner is, at once.
    let progress = Progress::load(course);
    let checked = course.steps.iter().flat_map(|step| {
        step.exercises.iter().map(|exercise| (step.folder.as_str(), exercise.name.as_str()))
    });
    let report = joined.report(course, &progress, checked);
    match class::send(&joined, &report, class::JOIN_DEADLINE) {
        Sent::Taken => {}
        Sent::Refused { status: 403, .. } => {
            return Err(Error::new(format!(
                "the class at {} refused that code: check it on the instructor's page",
                joined.url
            )));
        }
        Sent::Refused { status, detail } => {
            return Err(Error::new(format!(
                "the class at {} said no ({status}): {detail}",
                joined.url
            )));
        }
        Sent::Unanswered(why) => {
            return Err(Error::new(format!(
                "no class answers at {} ({why}). Is it the address on the instructor's page, \
                 and was the class started with --host 0.0.0.0?",
                joined.url
            )));
        }
    }
    joined.save(course)?;
    let title = format!("Joined the class at {} as {}.", joined.url, joined.name);
    println!("{}\n", Style::Bold.paint(&title));
    let so_far = match report.checks.len() {
        0 => String::new(),
        1 => " Where you are (the latest check of 1 exercise) went with this join.".to_string(),
        n => format!(" Where you are (the latest check of {n} exercises) went with this join."),
    };
    let what_goes = format!(
        "From now on, each `cargo workshop check` also sends its result to the class: the \
         step, the exercise, passed or not, and the check's first line, with your name (and a \
         seat number drawn at random, so that only you write in your row). Nothing else \
         leaves this laptop: no code, no paths, no environment.{so_far} A class that does not \
         answer never fails a check: the result waits for the next one."
    );
    print!("{}", terminal::wrap(&what_goes, "", 78));
    println!("\nTo stop: {}", Style::Bold.paint("cargo workshop leave"));
    Ok(ExitCode::SUCCESS)
}

/// The class's address as typed, made plain: `http://host:port`, no path.
fn class_url(typed: &str) -> Result<String> {
    let typed = typed.trim();
    let address = match typed.split_once("://") {
        Some(("http", address)) => address,
        Some((scheme, _)) => {
            return Err(Error::new(format!(
                "the class speaks plain http on the room's network, not {scheme}: \
                 http://<address>:<port>, as its page shows"
            )));
        }
        None => typed,
    };
    let address = address.trim_end_matches('/');
    let url = format!("http://{address}");
    let uri = url.parse::<awc::http::Uri>().ok();
    let host = uri.as_ref().and_then(|uri| uri.host()).unwrap_or_default();
    match !host.is_empty() && !address.contains(['/', '?', '#', '@']) {
        true => Ok(url),
        false => Err(Error::new(format!(
            "`{typed}` is not a class's address: http://<address>:<port>, as its page shows"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_address_is_made_plain() {
        assert_eq!(class_url("192.168.1.20:3100/").unwrap(), "http://192.168.1.20:3100");
        assert_eq!(class_url(" http://[::1]:3100 ").unwrap(), "http://[::1]:3100");
        assert!(class_url("https://example.org").is_err());
        assert!(class_url("http://host:3100/board").is_err());
        assert!(class_url("http://").is_err());
        assert!(class_url("http://host?x=1").is_err());
    }
}
