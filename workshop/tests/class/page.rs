//! The class's page in a real browser, as the instructor's projector shows
//! it: a learner's checks appear on their own, a name shows as the text it
//! is, and a wrong code changes nothing.

use std::time::Duration;

use serde_json::Value;

use crate::Class;
use crate::devtools::Browser;
use crate::support::{Scratch, said};

/// A name with HTML in it, at the longest a name may be.
const NAME: &str = "<b>Zoë</b><img src onerror=x()>";
/// Long enough for a busy machine; a check shows in well under a second
/// (bench/README.md).
const PATIENCE: Duration = Duration::from_secs(30);

/// What the page shows of the learner's 01·2: the cell's class, and what
/// the learner did last (Now).
fn cell() -> String {
    let name = serde_json::to_string(NAME).unwrap();
    format!(
        r##"(() => {{
            const columns = [...document.querySelectorAll("#board th[data-exercise]")];
            const column = columns.findIndex(th => th.dataset.exercise === "01-starter a_name_from_an_option");
            const rows = [...document.querySelectorAll("#board tbody tr")];
            const row = rows.find(tr => tr.querySelector("th.name").textContent === {name});
            if (!row || column < 0) return null;
            const cell = row.querySelectorAll("td")[column];
            return cell.className + ": " + row.querySelector("td.now").textContent;
        }})()"##
    )
}

fn shows(value: &Value, what: &str) -> bool {
    value.as_str().is_some_and(|shown| shown.starts_with(what))
}

#[test]
#[ignore = "needs chromium on PATH"]
fn the_page_follows_a_learners_checks_and_shows_names_as_text() {
    let _checking = crate::one_copy_checks_at_a_time();
    let class = Class::start("page");
    let browser = Browser::open(&class.url, "class-browser");
    browser.wait_for(
        "document.querySelector('#board .summary')?.textContent",
        |shown| shown.as_str().is_some_and(|text| text.contains("0 learners joined")),
        PATIENCE,
    );
    browser.evaluate("window.stillTheSamePage = true");

    let scratch = Scratch::new("class-page");
    let join = scratch.workshop(&["join", &class.url, "--name", NAME, "--code", &class.code]);
    assert!(join.status.success(), "{}", said(&join));
    browser.wait_for(&cell(), |shown| shows(shown, "untried"), PATIENCE);

    let check = scratch.workshop(&["check", "1", "2"]);
    assert_eq!(check.status.code(), Some(1), "{}", said(&check));
    let (shown, took) = browser.wait_for(&cell(), |shown| shows(shown, "failing"), PATIENCE);
    eprintln!("the failing check showed on the page {took:?} after the check ended");
    assert!(shows(&shown, "failing: 01·2 with SERVICE2_NAME=blue"), "{shown}");

    let applied = scratch.workshop(&["solution", "1", "2", "--apply", "--yes"]);
    assert!(applied.status.success(), "{}", said(&applied));
    let check = scratch.workshop(&["check", "1", "2"]);
    assert!(check.status.success(), "{}", said(&check));
    let (_, took) = browser.wait_for(&cell(), |shown| shows(shown, "done"), PATIENCE);
    eprintln!("the passing check showed on the page {took:?} after the check ended");
    assert_eq!(browser.evaluate("window.stillTheSamePage"), true, "the page was not reloaded");

    // The name is text: no element came of it, and no script ran.
    let elements = browser.evaluate("document.querySelectorAll('#board b, #board img').length");
    assert_eq!(elements, 0);
    assert_eq!(browser.evaluate("document.title"), "The class · cargo workshop");

    // A wrong code: refused, and nothing of it reaches the page, even once
    // the page has shown a change made after it.
    let stranger = Scratch::new("class-page-stranger");
    let refused =
        stranger.workshop(&["join", &class.url, "--name", "Mallory", "--code", "AAAA-AAAA"]);
    assert_eq!(refused.status.code(), Some(2), "{}", said(&refused));
    assert!(said(&refused).contains("refused that code"), "{}", said(&refused));
    let joined = class.report(&crate::seat(2), Some(&class.code), crate::report("Bob", &[]));
    assert_eq!(joined.status, 204, "{}", joined.body);
    let (board, _) = browser.wait_for(
        "document.querySelector('#board').textContent",
        |text| text.as_str().is_some_and(|text| text.contains("Bob")),
        PATIENCE,
    );
    let board = board.as_str().unwrap();
    assert!(board.contains("2 learners joined") && !board.contains("Mallory"), "{board}");
}
