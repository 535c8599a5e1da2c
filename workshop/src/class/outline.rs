//! The course as the class's page lays it out: a column per exercise,
//! grouped by step. Taken from the instructor's copy when the class starts;
//! a report about an exercise it does not have is refused.

use crate::course::Course;

pub struct Outline {
    pub steps: Vec<OutlineStep>,
}

pub struct OutlineStep {
    pub folder: String,
    pub number: u32,
    /// Each exercise's number and name.
    pub exercises: Vec<(u32, String)>,
}

impl Outline {
    pub fn of(course: &Course) -> Outline {
        let steps = course.steps.iter().filter(|step| !step.exercises.is_empty());
        let steps = steps.map(|step| OutlineStep {
            folder: step.folder.clone(),
            number: step.number,
            exercises: step.exercises.iter().map(|e| (e.number, e.name.clone())).collect(),
        });
        Outline { steps: steps.collect() }
    }

    pub fn has(&self, step: &str, exercise: &str) -> bool {
        self.steps.iter().any(|known| {
            known.folder == step && known.exercises.iter().any(|(_, name)| name == exercise)
        })
    }

    /// Every column: the step, and the exercise's number and name.
    pub fn columns(&self) -> impl Iterator<Item = (&OutlineStep, u32, &str)> {
        self.steps.iter().flat_map(|step| {
            step.exercises.iter().map(move |(number, name)| (step, *number, name.as_str()))
        })
    }

    /// `07·2`: an exercise as short as the page can say it.
    pub fn short_name(&self, step: &str, exercise: &str) -> String {
        let found =
            self.columns().find(|(known, _, name)| known.folder == step && *name == exercise);
        match found {
            Some((known, number, _)) => format!("{:02}·{number}", known.number),
            None => format!("{step} {exercise}"),
        }
    }
}
