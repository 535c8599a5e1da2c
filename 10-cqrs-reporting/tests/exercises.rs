//! The checks of this step's exercises (README, "Exercises"). Each waits,
//! ignored, until you run it once you have done the exercise:
//!
//! ```sh
//! cargo workshop check 10 1
//! cargo test -p step10-cqrs-reporting --test exercises -- --ignored exercise_1
//! ```
//!
//! It fails with what a client still sees wrong, and passes once the exercise
//! is done. More help, one level at a time: `cargo workshop hint 10 1` (from
//! solutions/10-cqrs-reporting/hints.md). It checks what a client sees
//! (answers, the events of the feeds, the reports), not how you wrote it. Each
//! runs users, accounts and reports as `cargo run` does, on free ports, with a
//! data folder of its own.

use serde_json::{Value, json};

use support::binary::free_ports;
use support::cqrs::{Services, call, get, poll_until};

mod support;

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_1_a_transfer_moves_money_between_two_accounts() {
    hints_only();
    let services = Services::start("exercise-1").await;
    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let reports = format!("http://127.0.0.1:{port}");
    let accounts = &services.accounts;
    services.create_user("ann", "Ann").await;
    services.create_user("bo", "Bo").await;
    services.open_account("ann-main", "ann", 100).await;
    services.open_account("bo-main", "bo", 0).await;

    let transfers = format!("{accounts}/ann-main/transfers");
    let (status, answer) = call("POST", &transfers, json!({ "to": "bo-main", "amount": 30 })).await;
    assert!(
        (200..300).contains(&status),
        "POST /ann-main/transfers {{\"to\": \"bo-main\", \"amount\": 30}} on accounts answered \
         {status}: {answer}. It should be done: a 2xx, with both balances changed."
    );
    let held = balances(accounts, &["ann-main", "bo-main"]).await;
    assert!(
        held == [json!(70), json!(30)],
        "after a transfer of 30 from ann-main (100) to bo-main (0), they hold {held:?} on \
         accounts: they should hold [70, 30]"
    );
    let caught_up = poll_until(&format!("{reports}/"), |_, list| {
        [("ann", 70), ("bo", 30)].iter().all(|(user, balance)| {
            list["reports"].as_array().is_some_and(|reports| {
                reports.iter().any(|r| r["user_id"] == *user && r["balance"] == *balance)
            })
        })
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "the reports never showed ann with 70 and bo with 30: they {}. The accounts feed \
         should tell them of both new balances.",
        caught_up.unwrap_err()
    );

    // What must not happen: money made or lost, or half a transfer.
    let written = services.last_seq(accounts).await;
    #[rustfmt::skip]
    let refused = [
        ("ann-main", json!({ "to": "bo-main", "amount": 1000 }), "more than ann-main holds"),
        ("ann-main", json!({ "to": "nobody-main", "amount": 10 }), "to an account that does not exist"),
        ("nobody-main", json!({ "to": "bo-main", "amount": 10 }), "from an account that does not exist"),
        ("ann-main", json!({ "to": "bo-main", "amount": -10 }), "of a negative amount"),
        ("ann-main", json!({ "to": "ann-main", "amount": 10 }), "from ann-main to itself"),
    ];
    for (from, transfer, what) in refused {
        let url = format!("{accounts}/{from}/transfers");
        let (status, answer) = call("POST", &url, transfer.clone()).await;
        let held = balances(accounts, &["ann-main", "bo-main"]).await;
        let events = services.last_seq(accounts).await - written;
        assert!(
            (400..500).contains(&status) && held == [json!(70), json!(30)] && events == 0,
            "a transfer {what} (POST /{from}/transfers {transfer}) answered {status}: {answer}; \
             then ann-main and bo-main held {held:?} and the accounts feed had {events} new \
             events. It should be refused with a 4xx problem (400 bad input, 404 no such \
             account, 409 too little money) and change nothing: [70, 30], no event."
        );
    }
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_2_reports_of_the_users_in_a_state() {
    hints_only();
    let services = Services::start("exercise-2").await;
    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let reports = format!("http://127.0.0.1:{port}");
    let users = &services.users;
    let states = [
        ("ann", "active"),
        ("bo", "suspended"),
        ("cy", "closed"),
        ("di", "suspended"),
        ("ed", "active"),
    ];
    for (user, state) in states {
        services.create_user(user, &user.to_uppercase()).await;
        if state != "active" {
            let (status, body) =
                call("PATCH", &format!("{users}/{user}"), json!({ "state": state })).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let all = poll_until(&format!("{reports}/"), |_, list| {
        states.iter().all(|(user, state)| {
            list["reports"].as_array().is_some_and(|reports| {
                reports.iter().any(|r| r["user_id"] == *user && r["state"] == *state)
            })
        })
    })
    .await;
    assert!(
        all.is_ok(),
        "GET / on reports never listed the five users in their states: it {}. This is before \
         any `?state=`: the reports should still follow the feeds.",
        all.unwrap_err()
    );

    for (state, expected) in [("suspended", ["bo", "di"].as_slice()), ("closed", &["cy"])] {
        let (status, list) = get(&format!("{reports}/?state={state}")).await;
        let listed = user_ids(&list);
        assert!(
            status == 200 && listed == expected,
            "GET /?state={state} on reports answered {status} with the reports of {listed:?}: \
             it should list those of {expected:?} only"
        );
    }
    let (status, list) = get(&format!("{reports}/")).await;
    let listed = user_ids(&list);
    assert!(
        status == 200 && listed == ["ann", "bo", "cy", "di", "ed"],
        "GET / on reports answered {status} with the reports of {listed:?}: without `?state=` \
         it should still list them all."
    );
    let (status, problem) = get(&format!("{reports}/?state=asleep")).await;
    let said = match &problem {
        Value::Null => "a body that is not JSON (actix's own plain-text error)".to_string(),
        problem => problem.to_string(),
    };
    assert_eq!(
        (status, problem["status"].clone()),
        (400, json!(400)),
        "GET /?state=asleep on reports answered {status} with {said}. It should be a 400 problem \
         (application/problem+json): there is no such state."
    );
}

#[actix_web::test]
#[ignore = "exercise: run it by name once you have done it"]
async fn exercise_3_a_closed_account_leaves_the_report() {
    hints_only();
    let services = Services::start("exercise-3").await;
    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let reports = format!("http://127.0.0.1:{port}");
    let accounts = &services.accounts;
    services.create_user("ann", "Ann").await;
    services.open_account("ann-main", "ann", 100).await;
    services.open_account("ann-old", "ann", 0).await;
    let report = format!("{reports}/ann");
    let both = json!({ "ann-main": 100, "ann-old": 0 });
    let seen =
        poll_until(&report, |status, report| status == 200 && report["accounts"] == both).await;
    assert!(
        seen.is_ok(),
        "the report of ann never listed her two accounts: it {}",
        seen.unwrap_err()
    );

    let (status, answer) = call("DELETE", &format!("{accounts}/ann-old"), Value::Null).await;
    assert!(
        (200..300).contains(&status),
        "DELETE /ann-old (an account that holds 0) on accounts answered {status}: {answer}. An \
         empty account can be closed: 200 or 204."
    );
    let (status, _) = get(&format!("{accounts}/ann-old")).await;
    assert_eq!(
        status, 404,
        "after DELETE /ann-old, GET /ann-old on accounts answered {status}: a closed account is \
         gone, 404."
    );
    let (_, page) =
        get(&format!("{accounts}/events?after={}", services.last_seq(accounts).await - 1)).await;
    let last = &page["events"][0]["event"];
    assert!(
        last["type"] == "account_closed" && last["id"] == "ann-old",
        "the last event of the accounts feed is {last}: it should tell that ann-old was closed, \
         {{\"type\": \"account_closed\", \"id\": \"ann-old\", …}}, so that whoever follows \
         the feed hears of it"
    );
    let closed = poll_until(&report, |status, report| {
        status == 200
            && report["accounts"] == json!({ "ann-main": 100 })
            && report["balance"] == 100
    })
    .await;
    assert!(
        closed.is_ok(),
        "the report of ann never dropped ann-old: it {}. The report should follow the \
         accounts feed, the closing of an account included.",
        closed.unwrap_err()
    );

    // Money does not vanish: an account that holds some is not closed.
    let written = services.last_seq(accounts).await;
    let (status, answer) = call("DELETE", &format!("{accounts}/ann-main"), Value::Null).await;
    let (_, account) = get(&format!("{accounts}/ann-main")).await;
    let events = services.last_seq(accounts).await - written;
    assert!(
        status == 409 && account["balance"] == 100 && events == 0,
        "DELETE /ann-main (an account that holds 100) answered {status}: {answer}; then \
         ann-main was {account} and the feed had {events} new events. It should be refused, \
         409 Conflict (the money must go somewhere first), and change nothing."
    );
    let (status, _) = call("DELETE", &format!("{accounts}/ann-old"), Value::Null).await;
    assert_eq!(status, 404, "DELETE /ann-old a second time answered {status}: it is gone, 404");
}

/// The balances of `ids`, as accounts answers them.
async fn balances(accounts: &str, ids: &[&str]) -> Vec<Value> {
    let mut balances = Vec::new();
    for id in ids {
        balances.push(get(&format!("{accounts}/{id}")).await.1["balance"].clone());
    }
    balances
}

/// The users whose reports a `GET /` of reports lists, in order.
fn user_ids(list: &Value) -> Vec<String> {
    let reports = list["reports"].as_array().cloned().unwrap_or_default();
    reports.iter().map(|report| report["user_id"].as_str().unwrap_or_default().into()).collect()
}

/// A failed check prints its hint and where it failed, not a backtrace:
/// with `RUST_BACKTRACE=1`, set on many machines, a hundred lines of
/// frames would push the hint off the screen.
fn hints_only() {
    std::panic::set_hook(Box::new(|panic| eprintln!("\n{panic}\n")));
}
