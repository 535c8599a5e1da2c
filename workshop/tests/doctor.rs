//! `cargo workshop doctor` names a port that something holds, and passes a
//! free one. The ports it checks are the test's, not the steps' own, so a
//! step running on this machine changes nothing.

mod support;

use std::net::TcpListener;
use std::process::Command;

use support::{said, workspace_root};

fn doctor(ports: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_workshop"))
        .arg("doctor")
        .current_dir(workspace_root())
        .env("WORKSHOP_DOCTOR_PORTS", ports)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    said(&output)
}

#[test]
fn doctor_names_a_port_in_use_and_passes_a_free_one() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let output = doctor(&port.to_string());
    let line = output.lines().find(|line| line.contains(&format!("port {port}")));
    let line = line.unwrap_or_else(|| panic!("no line for port {port}: {output}"));
    assert!(line.starts_with("fail  port") && line.contains("is in use"), "{line}");
    if cfg!(target_os = "linux") {
        let pid = format!("pid {}", std::process::id());
        assert!(line.contains(&pid), "the holder, {pid}, is not named: {line}");
    }

    drop(held);
    let output = doctor(&port.to_string());
    assert!(output.contains(&format!("pass  port {port} is free")), "{output}");
}
