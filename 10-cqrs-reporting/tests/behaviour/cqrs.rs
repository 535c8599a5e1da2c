//! CQRS as a client and an operator see it: commands through the write
//! services, their event feeds, and the reports that follow them, each
//! service a process of the real binary with a database in a folder of the
//! test's own.

use std::time::Duration;

use rusqlite::TransactionBehavior;
use serde_json::{Value, json};

use crate::support::PATIENCE;
use crate::support::binary::{free_ports, lines_until, spawn, start_step};
use crate::support::cqrs::{
    Services, call, get, send, spawn_service, stop, wait_for, wait_for_health,
};

#[actix_web::test]
async fn the_feed_serves_typed_events_in_order_a_page_at_a_time_and_waits_for_new_ones() {
    let services = Services::start("feed").await;
    let users = &services.users;
    for (i, name) in ["Ann", "Bo", "Cy", "Di", "Ed"].iter().enumerate() {
        services.create_user(&format!("u{i}"), name).await;
    }
    let seqs = |page: &Value| -> Vec<i64> {
        page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    let (_, page) = get(&format!("{users}/events?after=0&limit=2")).await;
    assert_eq!((seqs(&page), page["last_seq"].clone()), (vec![1, 2], json!(5)));
    let event = &page["events"][0]["event"];
    assert_eq!(
        *event,
        json!({ "type": "user_created", "id": "u0", "name": "Ann", "state": "active" })
    );
    // Every page says which history it is of: the epoch of users' database.
    let epoch = page["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|epoch| !epoch.is_empty()), "{page}");
    let (_, page) = get(&format!("{users}/events?after=2&limit=2")).await;
    assert_eq!((seqs(&page), page["epoch"].clone()), (vec![3, 4], epoch));
    // Nothing new, no wait: an empty page at once.
    let (_, page) = get(&format!("{users}/events?after=5")).await;
    assert_eq!((seqs(&page), page["last_seq"].clone()), (vec![], json!(5)));

    // A follower waiting for what comes after 5 gets it when it is written.
    let (long_poll, u4) = (format!("{users}/events?after=5&wait=20s"), format!("{users}/u4"));
    let write = call("PATCH", &u4, json!({ "name": "Eddie" }));
    let ((_, page), (written, _)) = tokio::join!(get(&long_poll), write);
    assert_eq!((written, seqs(&page)), (200, vec![6]));
    assert_eq!(page["events"][0]["event"]["type"], "user_changed");
    assert_eq!(page["events"][0]["event"]["name"], "Eddie");

    for query in
        ["after=-1", "after=abc", "limit=0", "limit=5000", "wait=2h", "wait=soon", "from=3"]
    {
        let (status, problem) = get(&format!("{users}/events?{query}")).await;
        assert_eq!((status, problem["status"].clone()), (400, json!(400)), "{query}: {problem}");
    }
}

#[actix_web::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let services = Services::start("bad-input").await;
    let (users, accounts) = (&services.users, &services.accounts);
    services.create_user("ann", "Ann").await;
    call("POST", &format!("{accounts}/"), json!({ "id": "ann-1", "user_id": "ann" })).await;
    let before = (services.last_seq(users).await, services.last_seq(accounts).await);
    assert_eq!(before, (1, 1));

    let (user, account) = (format!("{users}/ann"), format!("{accounts}/ann-1"));
    let (new_user, new_account) = (format!("{users}/"), format!("{accounts}/"));
    let json = Some("application/json");
    #[rustfmt::skip]
    let bad = [
        // (method, url, content type, body, status, words the detail must hold)
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo""#, 400, "EOF while parsing"),
        ("POST", &new_user, json, r#"{"id": "bo"}"#, 400, "missing field `name`"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": 5}"#, 400, "invalid type"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo", "age": 3}"#, 400, "unknown field `age`"),
        ("POST", &new_user, None, r#"{"id": "bo", "name": "Bo"}"#, 400, "Content-Type: application/json"),
        ("POST", &new_user, json, r#"{"id": "b o", "name": "Bo"}"#, 400, "1 to 64 letters"),
        ("POST", &new_user, json, r#"{"id": "events", "name": "Bo"}"#, 400, "keep for themselves"),
        ("POST", &new_user, json, r#"{"id": "healthz", "name": "Bo"}"#, 400, "keep for themselves"),
        ("POST", &new_user, json, r#"{"id": "metrics", "name": "Bo"}"#, 400, "keep for themselves"),
        ("POST", &new_account, json, r#"{"id": "healthz", "user_id": "ann"}"#, 400, "keep for themselves"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "  "}"#, 400, "1 to 100 characters"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "B\u0000o"}"#, 400, "cannot hold U+0000, a control character"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo\u0007"}"#, 400, "cannot hold U+0007, a control character"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "\u001b[31mBo"}"#, 400, "cannot hold U+001B, a control character"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo\u2028Bo"}"#, 400, "cannot hold U+2028, a line or paragraph separator"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo\u202enimda"}"#, 400, "cannot hold U+202E, a bidirectional override"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "\ufeffBo"}"#, 400, "cannot hold U+FEFF, a byte order mark"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "\u200b"}"#, 400, "a character one can see"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "\u200b \u2060\u200d"}"#, 400, "a character one can see"),
        ("PATCH", &user, json, r#"{"name": "Ann\u001b]52;c;aGk=\u0007"}"#, 400, "a control character"),
        ("POST", &new_user, json, r#"{"id": "bo", "name": "Bo", "state": "asleep"}"#, 400, "unknown variant `asleep`"),
        ("POST", &new_user, json, r#"{"id": "ann", "name": "Another Ann"}"#, 409, "exists already"),
        ("PATCH", &format!("{users}/nobody"), json, r#"{"name": "X"}"#, 404, "no user has the id nobody"),
        ("PATCH", &user, json, r#"{}"#, 400, "nothing to change"),
        ("PATCH", &user, json, r#"{"state": "gone"}"#, 400, "expected one of `active`, `suspended`, `closed`"),
        ("POST", &new_account, json, r#"{"id": "x-1", "user_id": "nobody"}"#, 422, "create the user first"),
        ("POST", &new_account, json, r#"{"id": "ann-1", "user_id": "ann", "balance": 5}"#, 409, "exists already"),
        ("POST", &new_account, json, r#"{"id": "ann-2", "user_id": "ann", "balance": "lots"}"#, 400, "invalid type"),
        ("POST", &new_account, json, r#"{"id": "ann-2", "user_id": "ann", "balance": 1.5}"#, 400, "invalid type"),
        ("POST", &new_account, json, r#"{"id": "ann-2", "user_id": "ann", "balance": -1}"#, 400, "from 0 to"),
        ("PATCH", &format!("{accounts}/nothing"), json, r#"{"balance": 3}"#, 404, "no account has the id nothing"),
        ("PATCH", &account, json, r#"{"balance": null}"#, 400, "invalid type"),
        ("PATCH", &account, json, r#"{"balance": -5}"#, 400, "from 0 to"),
        ("PATCH", &account, json, r#"{"balance": 9223372036854775807}"#, 400, "from 0 to"),
        ("DELETE", &user, json, "", 405, "GET, PATCH are"),
        ("PUT", &new_account, json, "{}", 405, "GET, POST are"),
        ("GET", &format!("{users}/ann/accounts"), None, "", 404, "nothing is served at /ann/accounts"),
    ];
    for (method, url, content_type, body, status, words) in bad {
        let (answered, problem) = send(method, url, content_type, body).await;
        assert_eq!(
            (answered, problem["status"].as_u64()),
            (status, Some(status.into())),
            "{method} {url} {body}: {problem}"
        );
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{method} {url} {body}: {detail}");
    }
    let huge = format!(r#"{{"id": "bo", "name": "{}"}}"#, "B".repeat(100_000));
    assert_eq!(send("POST", &new_user, json, &huge).await.0, 413);

    // Nothing written: no event, and the data as it was.
    assert_eq!((services.last_seq(users).await, services.last_seq(accounts).await), before);
    assert_eq!(get(&user).await.1, json!({ "id": "ann", "name": "Ann", "state": "active" }));
    assert_eq!(get(&format!("{users}/bo")).await.0, 404);
    assert_eq!(get(&account).await.1["balance"], 0);
}

#[actix_web::test]
async fn names_in_any_script_are_kept_as_they_were_sent() {
    let services = Services::start("names").await;
    let names = ["José Ñúñez", "Zoë", "李小龙", "สมชาย ใจดี", "محمد", "Ann 👩‍💻", "🏳️‍🌈 Bo"];
    for (n, name) in names.iter().enumerate() {
        services.create_user(&format!("u{n}"), name).await;
        let (_, user) = get(&format!("{}/u{n}", services.users)).await;
        assert_eq!(user["name"], *name);
    }
}

#[actix_web::test]
async fn a_create_sent_again_is_answered_with_the_record_and_another_is_a_conflict() {
    let services = Services::start("idempotent").await;
    let (users, accounts) = (&services.users, &services.accounts);
    let ann = json!({ "id": "ann", "name": "Ann" });
    let (status, created) = call("POST", &format!("{users}/"), ann.clone()).await;
    assert_eq!(status, 201, "{created}");
    // A client that lost the answer sends it again: it learns the user is
    // its own, and nothing is written twice. The same once read: the name
    // trimmed, the state as it defaults, the keys in any order.
    let again = [ann, json!({ "state": "active", "name": " Ann ", "id": "ann" })];
    for body in again {
        let (status, user) = call("POST", &format!("{users}/"), body.clone()).await;
        assert_eq!((status, &user), (200, &created), "{body}");
    }
    // Another user under that id is not a retry.
    let other = json!({ "id": "ann", "name": "Ann", "state": "suspended" });
    let (status, problem) = call("POST", &format!("{users}/"), other).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("is not the one sent"), "{problem}");

    let account = json!({ "id": "ann-main", "user_id": "ann", "balance": 100 });
    assert_eq!(call("POST", &format!("{accounts}/"), account.clone()).await.0, 201);
    assert_eq!(call("POST", &format!("{accounts}/"), account).await.0, 200);
    let other = json!({ "id": "ann-main", "user_id": "ann", "balance": 5 });
    assert_eq!(call("POST", &format!("{accounts}/"), other).await.0, 409);
    assert_eq!((services.last_seq(users).await, services.last_seq(accounts).await), (1, 1));
}

#[actix_web::test]
async fn a_write_waits_while_another_process_holds_the_database() {
    let services = Services::start("contention").await;
    services.create_user("ann", "Ann").await;
    // Another process (sqlite3, a backup) in a write transaction.
    let mut other = rusqlite::Connection::open(services.data.0.join("users.sqlite")).unwrap();
    let holding = other.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    let users = &services.users;
    let (new_user, ann) = (format!("{users}/"), format!("{users}/ann"));
    let writes = async {
        let create = call("POST", &new_user, json!({ "id": "bo", "name": "Bo" }));
        let rename = call("PATCH", &ann, json!({ "name": "Ann B." }));
        tokio::join!(create, rename)
    };
    tokio::pin!(writes);
    // Held for a second: the writes wait for it, within the busy timeout,
    // rather than fail at once with "database is locked".
    let early = tokio::time::timeout(Duration::from_secs(1), &mut writes).await;
    assert!(early.is_err(), "answered while the database was held: {early:?}");
    holding.commit().unwrap();
    let ((created, user), (renamed, _)) = writes.await;
    assert_eq!((created, renamed), (201, 200), "{user}");
    assert_eq!(get(&ann).await.1["name"], "Ann B.");
    // Reads never waited: they have a connection of their own.
    assert_eq!(get(&format!("{users}/bo")).await.0, 200);
}

#[actix_web::test]
async fn a_second_copy_of_a_service_on_the_same_data_is_refused_at_start() {
    let services = Services::start("second-copy").await;
    let port = free_ports(1)[0];
    let (mut second, mut lines) =
        spawn_service(&services.data, &services.registry, "users", port, &[]);
    let said = lines_until(&mut lines, "cannot start").await.join("\n");
    assert!(said.contains("another users is running on the data in"), "{said}");
    assert!(said.contains("--data-dir"), "{said}");
    let status = tokio::time::timeout(PATIENCE, second.wait()).await.unwrap().unwrap();
    assert!(!status.success());
    // The first one still serves, and writes.
    services.create_user("ann", "Ann").await;
}

#[actix_web::test]
async fn a_write_that_fails_shows_in_health_until_one_succeeds() {
    let services = Services::start("failing-writes").await;
    services.create_user("ann", "Ann").await;
    let health = format!("{}/healthz", services.users);
    wait_for_health(&health, 200, "the last write was committed").await;
    // As with a full disk, every write fails while reads still work: here
    // a trigger refuses every event, which a test can add and take away
    // while users runs, on any OS.
    let users_db = rusqlite::Connection::open(services.data.0.join("users.sqlite")).unwrap();
    let full = "CREATE TRIGGER full BEFORE INSERT ON events
        BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;";
    users_db.execute_batch(full).unwrap();
    let bo = json!({ "id": "bo", "name": "Bo" });
    let (status, problem) = call("POST", &format!("{}/", services.users), bo.clone()).await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(get(&format!("{}/ann", services.users)).await.0, 200);
    let document = wait_for_health(&health, 429, "database or disk is full").await;
    let writes = &document["checks"]["database:writes"][0];
    assert_eq!(writes["status"], "warn", "{document}");
    assert!(writes["output"].as_str().unwrap().starts_with("the last write failed"), "{document}");

    // Space again: the next write goes through, and health passes.
    users_db.execute_batch("DROP TRIGGER full;").unwrap();
    assert_eq!(call("POST", &format!("{}/", services.users), bo).await.0, 201);
    wait_for_health(&health, 200, "the last write was committed").await;
}

#[actix_web::test]
async fn the_report_of_the_workshop_scenario_has_the_name_state_and_balance() {
    let services = Services::start("scenario").await;
    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let (users, accounts) = (&services.users, &services.accounts);
    let (status, user) =
        call("POST", &format!("{users}/"), json!({ "id": "somchai", "name": "Somchai" })).await;
    assert_eq!((status, user["state"].as_str()), (201, Some("active")));
    let commands = [
        ("POST", format!("{accounts}/"), json!({ "id": "somchai-main", "user_id": "somchai" })),
        ("PATCH", format!("{users}/somchai"), json!({ "state": "suspended" })),
        ("PATCH", format!("{users}/somchai"), json!({ "name": "Somchai Jaidee" })),
        ("PATCH", format!("{accounts}/somchai-main"), json!({ "balance": 1500 })),
    ];
    for (method, url, body) in commands {
        let (status, answer) = call(method, &url, body).await;
        assert!((200..300).contains(&status), "{method} {url}: {answer}");
    }
    let report = format!("http://127.0.0.1:{port}/somchai");
    let report = wait_for(&report, 200, |report| report["events_applied"] == 5).await;
    let expected = json!({
        "user_id": "somchai", "name": "Somchai Jaidee", "state": "suspended",
        "balance": 1500, "accounts": { "somchai-main": 1500 }, "events_applied": 5,
    });
    assert_eq!(report, expected);
    // The health document says how far each feed has been applied.
    let health = format!("http://127.0.0.1:{port}/healthz");
    let health = wait_for_health(&health, 200, "applied events up to 3 of 3: 0 behind").await;
    assert!(health.to_string().contains("applied events up to 2 of 2: 0 behind"), "{health}");
    assert_eq!(get(&format!("http://127.0.0.1:{port}/nobody")).await.0, 404);
}

#[actix_web::test]
async fn an_event_the_reports_cannot_read_stops_them_there_and_says_so() {
    let services = Services::start("unreadable").await;
    services.create_user("ann", "Ann").await;
    // An event no version of users wrote: a bug, or a hand in the database.
    let users_db = rusqlite::Connection::open(services.data.0.join("users.sqlite")).unwrap();
    let unreadable = r#"{"type": "user_deleted", "id": "ann"}"#;
    users_db.execute("INSERT INTO events (event) VALUES (?1)", [unreadable]).unwrap();

    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let health = format!("http://127.0.0.1:{port}/healthz");
    let problem = "event 2 is not a users event the reports know (unknown variant `user_deleted`";
    let document = wait_for_health(&health, 429, problem).await;
    assert_eq!(document["checks"]["feed:users"][0]["status"], "warn", "{document}");
    // Not skipped: the list says where the feed stopped, and why.
    let (_, list) = get(&format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(list["feeds"]["users"]["applied"], 1, "{list}");
    assert!(list["feeds"]["users"]["problem"].as_str().unwrap().contains(problem), "{list}");
    assert_eq!(list["reports"][0]["name"], "Ann", "what came before it is applied: {list}");
}

#[actix_web::test]
async fn reports_stop_following_a_feed_whose_database_was_replaced() {
    let mut services = Services::start("new-history").await;
    let port = free_ports(1)[0];
    let reports = format!("http://127.0.0.1:{port}");
    let (mut reports_process, _) = services.reports(port, &[]);
    services.create_user("ann", "Ann").await;
    services.create_user("bo", "Bo").await;
    let health = format!("{reports}/healthz");
    wait_for_health(&health, 200, "applied events up to 2 of 2").await;

    // users starts again on an empty database, and its new feed soon goes
    // past the old position: events 1 to 3 of another history.
    services.replace_the_users_database().await;
    for user in ["cy", "di", "ed"] {
        services.create_user(user, user).await;
    }
    // Not applied on top of the old one as if it went on: the reports stop
    // following it, and say so, failing, until they are rebuilt.
    let document = wait_for_health(&health, 503, "was its database replaced?").await;
    assert_eq!(document["checks"]["feed:users"][0]["status"], "fail", "{document}");
    assert!(document.to_string().contains("reports.sqlite"), "{document}");
    assert_eq!(document["checks"]["feed:accounts"][0]["status"], "pass", "{document}");
    assert_eq!(get(&format!("{reports}/cy")).await.0, 404);
    // Still so once the reports are restarted: they keep the epoch they follow.
    stop(&mut reports_process).await;
    let (_reports, _) = services.reports(port, &[]);
    wait_for_health(&health, 503, "was its database replaced?").await;
    assert_eq!(get(&format!("{reports}/cy")).await.0, 404);
}

#[actix_web::test]
async fn a_feed_replaced_before_any_of_its_events_was_applied_is_followed() {
    let mut services = Services::start("new-history-empty").await;
    let port = free_ports(1)[0];
    let (_reports, _) = services.reports(port, &[]);
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_for_health(&health, 200, "applied events up to 0 of 0").await;
    // Nothing of the old history is in the reports: nothing to mix up.
    services.replace_the_users_database().await;
    services.create_user("ann", "Ann").await;
    wait_for(&format!("http://127.0.0.1:{port}/ann"), 200, |r| r["name"] == "Ann").await;
    wait_for_health(&health, 200, "applied events up to 1 of 1").await;
}

#[actix_web::test]
async fn reports_stopped_while_writes_happen_catch_up_with_nothing_lost() {
    let services = Services::start("catch-up").await;
    let port = free_ports(1)[0];
    let report = format!("http://127.0.0.1:{port}/ann");
    let (mut reports, _) = services.reports(port, &[]);
    services.create_user("ann", "Ann").await;
    wait_for(&report, 200, |r| r["events_applied"] == 1).await;

    // Stopped (as by Ctrl-C): the writes go on without it.
    stop(&mut reports).await;
    let accounts = &services.accounts;
    call("POST", &format!("{accounts}/"), json!({ "id": "ann-1", "user_id": "ann" })).await;
    for balance in 1..=20 {
        call("PATCH", &format!("{accounts}/ann-1"), json!({ "balance": balance * 10 })).await;
    }
    call("PATCH", &format!("{}/ann", services.users), json!({ "name": "Ann B." })).await;

    // Started again: it resumes where it stopped.
    let (_reports, _) = services.reports(port, &[]);
    let caught_up = wait_for(&report, 200, |r| r["events_applied"] == 23).await;
    assert_eq!((&caught_up["name"], &caught_up["balance"]), (&json!("Ann B."), &json!(200)));
}

#[actix_web::test]
async fn reports_killed_in_the_middle_of_a_batch_apply_every_event_exactly_once() {
    let services = Services::start("killed").await;
    let accounts = &services.accounts;
    services.create_user("ann", "Ann").await;
    call("POST", &format!("{accounts}/"), json!({ "id": "ann-1", "user_id": "ann" })).await;
    for balance in 1..=60 {
        call("PATCH", &format!("{accounts}/ann-1"), json!({ "balance": balance })).await;
    }
    // Slowed down, in pages of 50: killed while it applies the first page.
    let port = free_ports(1)[0];
    let slow = [("REPORTS_BATCH", "50".to_string()), ("REPORTS_APPLY_PAUSE", "20ms".to_string())];
    let (mut reports, mut lines) = services.reports(port, &slow);
    lines_until(&mut lines, "applying 50 events of the accounts feed, after event 0").await;
    reports.start_kill().unwrap();
    reports.wait().await.unwrap();

    // Started again at full speed: every event applied once, none twice.
    let (_reports, _) = services.reports(port, &[]);
    let report = format!("http://127.0.0.1:{port}/ann");
    let report = wait_for(&report, 200, |r| r["balance"] == 60 && r["name"] == "Ann").await;
    assert_eq!(report["events_applied"], 62, "{report}");
}

#[actix_web::test]
async fn the_demo_plays_the_scenario_through_the_gateway_of_the_running_step() {
    let (_step, ports) = start_step(&[]).await;
    let gateway = format!("http://127.0.0.1:{}", ports[1]);
    // Ready when the gateway finds the three services, and accounts finds users.
    for service in ["users", "accounts", "reports"] {
        wait_for(&format!("{gateway}/api/{service}/"), 200, |_| true).await;
    }
    wait_for_health(&format!("http://127.0.0.1:{}/healthz", ports[5]), 200, "users at").await;
    let (mut demo, mut lines) = spawn(&["demo", "--gateway-url", &gateway], &[]);
    let status = tokio::time::timeout(PATIENCE, demo.wait()).await.unwrap().unwrap();
    let mut output = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, lines.recv()).await {
        output.push(line);
    }
    let output = output.join("\n");
    assert!(status.success(), "{output}");
    assert!(output.contains("-> 201 Created"), "{output}");
    assert!(output.contains(r#""name":"Somchai Jaidee""#), "{output}");
    assert!(output.contains("The report caught up"), "{output}");
}
