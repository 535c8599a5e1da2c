//! The class's API as a learner's laptop calls it: the code, the bounds,
//! and a class that survives its laptop's restart.

use crate::{Class, report, seat};

const STEP: &str = "01-starter";
const EXERCISE: &str = "a_name_from_an_option";

#[test]
fn a_report_without_the_right_code_changes_nothing() {
    let class = Class::start("code");
    let body = report("Mallory", &[(STEP, EXERCISE, "passed", None, 0)]);

    let without = class.report(&seat(1), None, body.clone());
    assert_eq!(without.status, 401, "{}", without.body);
    assert_eq!(without.content_type, "application/problem+json");

    let wrong = class.report(&seat(1), Some("AAAA-AAAA"), body.clone());
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_eq!(wrong.content_type, "application/problem+json");
    assert!(wrong.detail().contains("not this class's code"), "{}", wrong.body);
    let gone = class.leave(&seat(1), Some("AAAA-AAAA"));
    assert_eq!(gone.status, 403, "{}", gone.body);

    let board = class.board();
    assert!(!board.contains("Mallory"), "{board}");
    assert!(board.contains("0 learners joined"), "{board}");

    // The code as a learner may type it: lower case, without its dash.
    let typed = class.code.to_lowercase().replace('-', "");
    let right = class.report(&seat(1), Some(&typed), body);
    assert_eq!(right.status, 204, "{}", right.body);
    assert!(class.board().contains("Mallory"));
}

#[test]
fn what_is_out_of_bounds_is_refused_whole() {
    let class = Class::start("bounds");
    let code = Some(class.code.as_str());
    let good = (STEP, EXERCISE, "failed", Some("service2 answered 404"), 5);
    let long_hint = "x".repeat(201);
    let refused = [
        (report(&"N".repeat(33), &[good]), "longer than 32 characters"),
        (report("Ann\u{1b}[2J", &[good]), "control character"),
        (report("Ann\u{202e}nnA", &[good]), "control character"),
        (report(" Ann", &[good]), "space"),
        (report("Ann", &[good, (STEP, "no_such_exercise", "passed", None, 0)]), "git pull"),
        (report("Ann", &[good, ("99-nowhere", EXERCISE, "passed", None, 0)]), "git pull"),
        (report("Ann", &[(STEP, EXERCISE, "failed", Some(&long_hint), 0)]), "longer than 200"),
        (report("Ann", &[(STEP, EXERCISE, "failed", Some("a\nb"), 0)]), "control character"),
        (report("Ann", &[(STEP, EXERCISE, "sort of", None, 0)]), "unknown variant"),
        (report("Ann", &[good]).replace(r#""seconds_ago":5"#, r#""seconds_ago":-5"#), "-5"),
        (report("Ann", &vec![good; 65]), "more than 64 checks"),
        (r#"{"name":"Ann","checks":[],"path":"/home/ann"}"#.to_string(), "unknown field"),
        ("not json".to_string(), "not one this class reads"),
    ];
    for (body, why) in refused {
        let answer = class.report(&seat(7), code, body.clone());
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(answer.detail().contains(why), "{why:?} in {}", answer.body);
    }
    let not_a_seat = class.report("ANN-0000", code, report("Ann", &[good]));
    assert_eq!(not_a_seat.status, 400, "{}", not_a_seat.body);

    let huge = format!(r#"{{"name":"Ann","checks":[],"padding":"{}"}}"#, "x".repeat(200_000));
    let too_large = class.report(&seat(7), code, huge);
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert_eq!(too_large.content_type, "application/problem+json");

    let board = class.board();
    assert!(board.contains("0 learners joined"), "nothing changed: {board}");
    assert!(!board.contains("Ann"), "{board}");
}

#[test]
fn a_name_is_one_learners_and_the_class_has_room_for_four_hundred() {
    let class = Class::start("full");
    let code = Some(class.code.as_str());
    assert_eq!(class.report(&seat(1), code, report("Ann", &[])).status, 204);

    let taken = class.report(&seat(2), code, report("ann", &[]));
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.detail().contains("already goes by ann"), "{}", taken.body);
    // The same seat may change its name.
    assert_eq!(class.report(&seat(1), code, report("Ann Lee", &[])).status, 204);

    for learner in 2..=400 {
        let answer = class.report(&seat(learner), code, report(&format!("L{learner}"), &[]));
        assert_eq!(answer.status, 204, "learner {learner}: {}", answer.body);
    }
    let one_more = class.report(&seat(401), code, report("L401", &[]));
    assert_eq!(one_more.status, 409, "{}", one_more.body);
    assert!(one_more.detail().contains("at most 400 learners"), "{}", one_more.body);
    // Those already in carry on.
    let check = report("Ann Lee", &[(STEP, EXERCISE, "passed", None, 0)]);
    assert_eq!(class.report(&seat(1), code, check).status, 204);
    let board = class.board();
    assert!(board.contains("400 learners joined"), "{}", &board[..200]);
    assert!(!board.contains("L401"));

    // Leaving frees a place.
    assert_eq!(class.leave(&seat(400), code).status, 204);
    assert_eq!(class.report(&seat(401), code, report("L401", &[])).status, 204);
}

#[test]
fn a_restart_keeps_the_class_its_code_and_who_left() {
    let class = Class::start("restart");
    let code = class.code.clone();
    let failing = (STEP, EXERCISE, "failed", Some("service2 answered {\"name\":\"service 2\"}"), 3);
    assert_eq!(class.report(&seat(1), Some(&code), report("Ann", &[failing])).status, 204);
    assert_eq!(class.report(&seat(2), Some(&code), report("Bob", &[])).status, 204);
    assert_eq!(class.leave(&seat(2), Some(&code)).status, 204);
    // Written within a second of the change: then a crash loses nothing.
    class.wait_for_state(|room| room.contains("Ann") && !room.contains("Bob"));
    let state = class.kill();

    let class = Class::resume(&state, &["--port", "0"]);
    assert_eq!(class.code, code, "the learners' code still works");
    let board = class.board();
    assert!(board.contains("1 learner joined"), "{board}");
    assert!(board.contains("Ann") && !board.contains("Bob"), "{board}");
    let hint =
        r#"01·2 <span class="hint">service2 answered {&quot;name&quot;:&quot;service 2&quot;}"#;
    assert!(board.contains(hint), "{board}");
    let passed = report("Ann", &[(STEP, EXERCISE, "passed", None, 0)]);
    assert_eq!(class.report(&seat(1), Some(&code), passed).status, 204);
    class.wait_for_state(|room| room.contains("passed"));
    let state = class.kill();

    let class = Class::resume(&state, &["--port", "0", "--new"]);
    assert_ne!(class.code, code, "a new class has a new code");
    assert!(class.board().contains("0 learners joined"));
}

#[test]
fn a_learner_failing_one_exercise_for_long_stands_out_until_it_passes() {
    let class = Class::start("stuck");
    let code = Some(class.code.as_str());
    // Failing for 12 minutes by the learner's clock, whatever the class's.
    let first = report("Ann", &[(STEP, EXERCISE, "failed", Some("it said 404"), 12 * 60)]);
    assert_eq!(class.report(&seat(1), code, first).status, 204);
    let again = report("Ann", &[(STEP, EXERCISE, "failed", Some("it said 500"), 0)]);
    assert_eq!(class.report(&seat(1), code, again).status, 204);
    let recent = report("Bob", &[(STEP, EXERCISE, "failed", Some("it said 404"), 60)]);
    assert_eq!(class.report(&seat(2), code, recent).status, 204);

    let board = class.board();
    assert!(board.contains("1 stuck for over 10 min"), "{board}");
    assert!(board.contains(r#"<tr class="learner stuck"><th class="name">Ann</th>"#), "{board}");
    assert!(
        board.contains("<strong>Ann</strong> on 01·2: <span class=\"hint\">it said 500</span>"),
        "{board}"
    );
    assert!(board.contains(r#"<tr class="learner"><th class="name">Bob</th>"#), "{board}");

    let passed = report("Ann", &[(STEP, EXERCISE, "passed", None, 0)]);
    assert_eq!(class.report(&seat(1), code, passed).status, 204);
    let board = class.board();
    assert!(!board.contains("stuck"), "{board}");
    assert!(board.contains(r#"<td class="count">1</td>"#), "one done: {board}");
}
