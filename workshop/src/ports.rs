//! Is a port free for a step, and if not, what holds it? Binding the port
//! answers the first on Linux; macOS lets a second program bind 127.0.0.1
//! beside one that holds every address, so a connection is tried too. What
//! holds it comes from wherever the system tells: /proc on Linux, `lsof`
//! on macOS, `netstat` and `tasklist` on Windows.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

pub fn is_free(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let answers = TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok();
    !answers && TcpListener::bind(address).is_ok()
}

/// The program listening on `port` (`pid 1234, step07-circuit-breaker`),
/// where the system can tell.
pub fn holder(port: u16) -> Option<String> {
    if cfg!(target_os = "linux") {
        linux::holder(port)
    } else if cfg!(windows) {
        netstat_holder(port)
    } else {
        lsof_holder(port)
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `lsof -F pc` prints a line `p<pid>` then `c<command>` per process.
fn lsof_holder(port: u16) -> Option<String> {
    let listening = run("lsof", &["-nP", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-F", "pc"])?;
    let pid = listening.lines().find_map(|line| line.strip_prefix('p'))?;
    let command = listening.lines().find_map(|line| line.strip_prefix('c')).unwrap_or("?");
    Some(format!("pid {pid}, {command}"))
}

/// `netstat -ano -p TCP`: `TCP 127.0.0.1:3001 0.0.0.0:0 LISTENING 1234`.
fn netstat_holder(port: u16) -> Option<String> {
    let table = run("netstat", &["-ano", "-p", "TCP"])?;
    let suffix = format!(":{port}");
    let pid = table.lines().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let listening = columns.len() >= 5 && columns[3] == "LISTENING";
        (listening && columns[1].ends_with(&suffix)).then(|| columns[4].to_string())
    })?;
    let filter = format!("PID eq {pid}");
    let task = run("tasklist", &["/FI", &filter, "/FO", "CSV", "/NH"]).unwrap_or_default();
    let name = task.split(',').next().unwrap_or("").trim_matches('"').trim();
    Some(if name.is_empty() { format!("pid {pid}") } else { format!("pid {pid}, {name}") })
}

mod linux {
    use std::fs;

    /// The socket listening on `port` is a line of /proc/net/tcp (or tcp6)
    /// whose inode one process has open as a file descriptor.
    pub fn holder(port: u16) -> Option<String> {
        let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| fs::read_to_string(table).ok())
            .find_map(|table| listening_inode(&table, port))?;
        let socket = format!("socket:[{inode}]");
        for process in fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
            let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(descriptors) = fs::read_dir(process.path().join("fd")) else { continue };
            let holds = descriptors.filter_map(Result::ok).any(|descriptor| {
                fs::read_link(descriptor.path())
                    .is_ok_and(|target| target.to_string_lossy() == socket)
            });
            if holds {
                let name = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid}, {}", name.trim()));
            }
        }
        Some("another user's program".to_string())
    }

    /// Columns: sl, local address (hex ip:port), remote, state (0A is
    /// LISTEN), …, inode (the tenth).
    fn listening_inode(table: &str, port: u16) -> Option<String> {
        let port = format!(":{port:04X}");
        table.lines().skip(1).find_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let listening = columns.len() > 9 && columns[1].ends_with(&port) && columns[3] == "0A";
            listening.then(|| columns[9].to_string())
        })
    }
}
