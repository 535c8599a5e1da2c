//! `cargo workshop reset STEP` (or `--all`): the step folder back as it was
//! shipped, after saving what the learner changed in it (new files too) as
//! a patch they can apply again. Its checks' results go too: they were
//! about the code now gone.

use std::process::ExitCode;

use crate::course::{Course, Step};
use crate::error::Result;
use crate::git::Git;
use crate::saved;
use crate::terminal::{self, Style};

#[derive(clap::Args)]
pub struct Args {
    /// The step: 7, 07 or 07-circuit-breaker
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    step: Option<String>,
    /// Every step
    #[arg(long)]
    all: bool,
    /// Do not ask first (needed where there is no terminal to ask on)
    #[arg(long)]
    yes: bool,
}

pub fn run(course: &Course, args: Args) -> Result<ExitCode> {
    let steps: Vec<&Step> = match &args.step {
        Some(step) => vec![course.step(step)?],
        None => course.steps.iter().collect(),
    };
    let git = Git::of(course)?;
    let changed = saved::changed(&git, &steps)?;
    if changed.is_empty() {
        let which = match steps.as_slice() {
            [step] => format!("{} is as shipped", step.folder),
            _ => "Every step is as shipped".to_string(),
        };
        println!("{which}: nothing to reset.");
        return Ok(ExitCode::SUCCESS);
    }
    let listed: Vec<String> = changed
        .iter()
        .map(|change| format!("{} ({})", change.step.folder, change.files()))
        .collect();
    let question = format!(
        "Put {} back as shipped? Your changes are saved as a patch first, and the results of \
         its checks are cleared from your progress.",
        listed.join(", ")
    );
    if !args.yes && !terminal::confirm(&question)? {
        println!("Nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    let patches = saved::save_and_restore(course, &git, &changed)?;
    for (change, patch) in changed.iter().zip(&patches) {
        println!("{} is back as shipped.", Style::Bold.paint(&change.step.folder));
        println!("  Your changes are saved in {}", patch.display());
        println!("  To bring them back: {}", Style::Bold.paint(&saved::bring_back(course, patch)));
        println!(
            "  Its checks' results are cleared from your progress: `cargo workshop` shows its \
             exercises as not tried (the hints you read stay read)."
        );
    }
    Ok(ExitCode::SUCCESS)
}
