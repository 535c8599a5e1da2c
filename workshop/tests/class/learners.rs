//! Learners join a class from their copy of the workspace (a scratch copy
//! here), check, and leave, as the README says; and a class that does not
//! answer never costs them a check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use crate::Class;
use crate::support::{Scratch, said};

#[test]
fn a_learner_joins_checks_and_leaves() {
    let _checking = crate::one_copy_checks_at_a_time();
    let class = Class::start("learner");
    let scratch = Scratch::new("class-learner");

    let join = scratch.workshop(&["join", &class.url, "--name", "Ann", "--code", &class.code]);
    let output = said(&join);
    assert!(join.status.success(), "{output}");
    assert!(output.contains("Joined the class at"), "{output}");
    assert!(output.contains("Nothing else leaves this laptop"), "{output}");
    class.wait_for_line("Ann joined (1 in the class)");
    let status = said(&scratch.workshop(&[]));
    assert!(status.contains(&format!("In the class at {} as Ann", class.url)), "{status}");

    let check = scratch.workshop(&["check", "1", "2"]);
    let output = said(&check);
    assert_eq!(check.status.code(), Some(1), "the check's own verdict: {output}");
    assert!(output.contains(&format!("Sent to the class at {}.", class.url)), "{output}");
    let board = class.board();
    assert!(board.contains(r#"<td class="failing">✗</td>"#), "{board}");
    assert!(board.contains(r#"01·2 <span class="hint">with SERVICE2_NAME=blue"#), "{board}");

    let leave = scratch.workshop(&["leave"]);
    let output = said(&leave);
    assert!(output.contains("Its page no longer shows you"), "{output}");
    assert!(!class.board().contains("Ann"));
    assert!(!said(&scratch.workshop(&[])).contains("In the class"));
    let again = scratch.workshop(&["leave"]);
    assert!(said(&again).contains("in no class"), "{}", said(&again));
}

#[test]
fn a_class_that_does_not_answer_keeps_the_result_for_the_next_check() {
    let _checking = crate::one_copy_checks_at_a_time();
    let class = Class::start("away");
    let scratch = Scratch::new("class-away");
    let join = scratch.workshop(&["join", &class.url, "--name", "Ann", "--code", &class.code]);
    assert!(join.status.success(), "{}", said(&join));
    let port = class.port();
    let state = class.kill();

    let check = scratch.workshop(&["check", "1", "2"]);
    let output = said(&check);
    assert_eq!(check.status.code(), Some(1), "the check ran and said so: {output}");
    assert!(output.contains("01-starter exercise 2 (a name from an option): not yet"), "{output}");
    assert!(output.contains("did not answer"), "{output}");
    assert!(output.contains("goes with your next check"), "{output}");
    let joined = std::fs::read_to_string(scratch.path("progress/class.json")).unwrap();
    assert!(joined.contains("a_name_from_an_option"), "kept to send: {joined}");
    let status = said(&scratch.workshop(&[])).replace('\n', " ");
    assert!(status.contains("1 result to send with your next check"), "{status}");

    // The class is back (its laptop woke up): the next check sends both.
    let class = Class::resume(&state, &["--port", &port]);
    let check = scratch.workshop(&["check", "1", "1"]);
    assert!(said(&check).contains("Sent to the class"), "{}", said(&check));
    let board = class.board();
    assert_eq!(board.matches(r#"<td class="failing">"#).count(), 2, "01·1 and 01·2: {board}");
    let joined = std::fs::read_to_string(scratch.path("progress/class.json")).unwrap();
    assert!(!joined.contains("a_name_from_an_option"), "nothing left to send: {joined}");
}

/// A stand-in for a class that keeps the first request it gets and answers
/// 204: what `join` sends, byte for byte.
fn recorder() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (request, received) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut connection, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(connection.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        connection.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").unwrap();
        let _ = request.send(head + &String::from_utf8_lossy(&body));
    });
    (url, received)
}

#[test]
fn what_leaves_the_laptop_is_the_name_and_the_checks() {
    let scratch = Scratch::new("class-sent");
    let progress = r#"{"version":1,"steps":{"01-starter":{"a_name_from_an_option":{"last_check":
        {"outcome":"failed","at":"2026-01-01T10:00:00Z","hint":"service2 answered 404"}}}}}"#;
    std::fs::create_dir_all(scratch.path("progress")).unwrap();
    std::fs::write(scratch.path("progress/progress.json"), progress).unwrap();

    let (url, received) = recorder();
    let join = scratch.workshop(&["join", &url, "--name", "Ann", "--code", "kqxr-47mw"]);
    assert!(join.status.success(), "{}", said(&join));
    let request = received.recv_timeout(Duration::from_secs(30)).unwrap();
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("PUT /api/learners/"), "{head}");
    assert!(head.contains("authorization: Bearer KQXR47MW\r\n"), "{head}");
    let sent: serde_json::Value = serde_json::from_str(body).unwrap();
    let check = &sent["checks"][0];
    assert_eq!(sent.as_object().unwrap().len(), 2, "name and checks only: {sent}");
    assert_eq!(sent["name"], "Ann");
    assert_eq!(check.as_object().unwrap().len(), 5, "{check}");
    assert_eq!(check["step"], "01-starter");
    assert_eq!(check["exercise"], "a_name_from_an_option");
    assert_eq!(check["outcome"], "failed");
    assert_eq!(check["hint"], "service2 answered 404");
    assert!(check["seconds_ago"].as_u64().unwrap() > 0, "{check}");
    let root = scratch.root.display().to_string();
    assert!(!request.contains(&root), "no path leaves the laptop: {request}");
}
