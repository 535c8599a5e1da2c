//! One step's walk-through, run as a learner would: services started in
//! terminals of their own, commands pasted in another, on ports of its own.
//!
//! The README shows the workshop's ports (3001, 8500, ...). The session gives
//! each of them a free port instead, in every command it runs and in the
//! environment every service reads (`SERVICE2_PORT`, `REGISTRY_URL`, ...),
//! and writes the workshop's port back into everything printed. So the
//! README reads as the workshop and the run never meets a step someone is
//! running by hand.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::compare;
use crate::readme::{Action, Item};

/// The longest a command that ends by itself may run.
const COMMAND_WITHIN: Duration = Duration::from_secs(60);
/// The longest a service may take to say it listens, or to stop on Ctrl-C.
const START_WITHIN: Duration = Duration::from_secs(60);
const STOP_WITHIN: Duration = Duration::from_secs(20);
/// How often a condition is looked at again while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// Services whose `cargo run -p <step> -- <service>` keeps a terminal busy.
const SERVICES: [&str; 7] =
    ["gateway", "service1", "service2", "registry", "users", "accounts", "reports"];

/// What the services read from the environment, and the workshop port
/// each stands for.
const PORT_VARIABLES: [(&str, u16); 7] = [
    ("GATEWAY_PORT", 3001),
    ("SERVICE1_PORT", 3002),
    ("SERVICE2_PORT", 3003),
    ("USERS_PORT", 3005),
    ("ACCOUNTS_PORT", 3006),
    ("REPORTS_PORT", 3007),
    ("REGISTRY_PORT", 8500),
];
const URL_VARIABLES: [(&str, u16); 5] = [
    ("GATEWAY_URL", 3001),
    ("SERVICE1_URL", 3002),
    ("SERVICE2_URL", 3003),
    ("REGISTRY_URL", 8500),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", 4318),
];

/// What one step's walk-through did.
#[derive(Default)]
pub struct Report {
    pub commands: usize,
    pub outputs_compared: usize,
    pub not_run: Vec<String>,
}

pub struct Session {
    root: PathBuf,
    package: String,
    scratch: PathBuf,
    /// Workshop port -> the free port used instead.
    ports: BTreeMap<String, String>,
    running: Vec<Terminal>,
    /// Where each terminal's output stood when the last commands were pasted.
    marks: Vec<usize>,
}

/// A service started in a terminal of its own.
struct Terminal {
    /// What followed `--` in its command, or `step`.
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Session {
    pub fn new(root: &Path, package: &str, readme: &str) -> Result<Session, String> {
        let scratch =
            std::env::temp_dir().join(format!("walkthrough-{package}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        // curl as a learner sees it in a terminal: no progress meter.
        std::fs::write(scratch.join(".curlrc"), "no-progress-meter\n")
            .map_err(|e| format!("{}: {e}", scratch.display()))?;
        let mut workshop_ports: Vec<u16> =
            PORT_VARIABLES.iter().chain(&URL_VARIABLES).map(|(_, port)| *port).collect();
        workshop_ports.extend(numbers(readme).filter(|n| is_workshop_port(*n)));
        workshop_ports.sort_unstable();
        workshop_ports.dedup();
        let ports = free_ports_like(&workshop_ports)?
            .into_iter()
            .zip(workshop_ports)
            .map(|(free, workshop)| (workshop.to_string(), free.to_string()))
            .collect();
        Ok(Session {
            root: root.to_path_buf(),
            package: package.to_string(),
            scratch,
            ports,
            running: Vec::new(),
            marks: Vec::new(),
        })
    }

    pub fn run(&mut self, items: &[Item], report: &mut Report) -> Result<(), String> {
        for item in items {
            let line = item.line;
            match &item.action {
                Action::Commands { commands, expected, repeat_within, any_order } => {
                    self.marks =
                        self.running.iter().map(|t| t.output.lock().unwrap().len()).collect();
                    let deadline = Instant::now() + repeat_within.unwrap_or_default();
                    loop {
                        let printed = self
                            .paste(commands, expected.as_deref())
                            .map_err(|e| format!("line {line}: {e}"))?;
                        let Some(expected) = expected else { break };
                        if commands.iter().all(|c| self.starts_a_service(c)) {
                            break; // compared while waiting for it to start
                        }
                        let compared = if *any_order {
                            compare::lines_among(&printed, expected)
                        } else {
                            compare::output(&printed, expected)
                        };
                        match compared {
                            Ok(()) => break,
                            Err(_) if Instant::now() < deadline => thread::sleep(POLL),
                            Err(difference) => {
                                return Err(format!(
                                    "line {line}: what\n{}\nprinted is not what the README shows:\n{difference}",
                                    indent(commands)
                                ));
                            }
                        }
                    }
                    report.commands += commands.len();
                    report.outputs_compared += usize::from(expected.is_some());
                }
                Action::TerminalShows { expected, within } => {
                    self.wait_for_lines(None, expected, *within)
                        .map_err(|e| format!("line {line}: {e}"))?;
                    report.outputs_compared += 1;
                }
                Action::CtrlC { name } => {
                    self.ctrl_c(name).map_err(|e| format!("line {line}: {e}"))?
                }
                Action::NotRun { why } => report.not_run.push(format!("line {line}: {why}")),
                Action::Pause(pause) => thread::sleep(*pause),
            }
        }
        Ok(())
    }

    /// Pastes the commands one by one; returns what the ones that end printed.
    fn paste(&mut self, commands: &[String], expected: Option<&str>) -> Result<String, String> {
        let mut printed = String::new();
        for command in commands {
            if self.starts_a_service(command) {
                self.start(command, expected)?;
            } else {
                let output = self.finish(command)?;
                printed.push_str(&output);
                if !output.is_empty() && !output.ends_with('\n') {
                    printed.push('\n');
                }
            }
        }
        Ok(printed)
    }

    /// `cargo run -p <step>`, alone or with a service: it keeps a terminal.
    fn starts_a_service(&self, command: &str) -> bool {
        let command = without_variables(command);
        let Some(rest) = command.strip_prefix(&format!("cargo run -p {}", self.package)) else {
            return false;
        };
        let arguments: Vec<&str> =
            rest.trim().trim_start_matches("--").split_whitespace().collect();
        match arguments.first() {
            None => true,
            Some(service) => {
                SERVICES.contains(service)
                    && !arguments.iter().any(|a| *a == "--help" || *a == "-h")
            }
        }
    }

    fn start(&mut self, command: &str, expected: Option<&str>) -> Result<(), String> {
        let name = match without_variables(command).split_once(" -- ") {
            Some((_, arguments)) => arguments.trim().to_string(),
            None => "step".to_string(),
        };
        let child_output = Arc::new(Mutex::new(String::new()));
        let child = self.spawn(command, Arc::clone(&child_output))?;
        self.running.push(Terminal { name: name.clone(), child, output: child_output });
        self.marks.push(0);
        let index = self.running.len() - 1;
        match expected {
            Some(expected) => self.wait_for_lines(Some(index), expected, START_WITHIN),
            None => {
                let services = if name == "step" { self.services_of_the_step()? } else { 1 };
                let deadline = Instant::now() + START_WITHIN;
                loop {
                    let output = self.running[index].output.lock().unwrap().clone();
                    if output.matches(" listening on ").count() >= services {
                        return Ok(());
                    }
                    if self.running[index].has_ended() || Instant::now() > deadline {
                        return Err(format!("`{command}` did not start; it printed:\n{output}"));
                    }
                    thread::sleep(POLL);
                }
            }
        }
    }

    /// Runs a command that ends by itself; what it printed, both streams.
    fn finish(&mut self, command: &str) -> Result<String, String> {
        let command = self.with_pid(command)?;
        let output = Arc::new(Mutex::new(String::new()));
        let mut child = self.spawn(&command, Arc::clone(&output))?;
        let deadline = Instant::now() + COMMAND_WITHIN;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                stop(&mut child, "KILL");
                return Err(format!("`{command}` did not end within {COMMAND_WITHIN:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        wait_for_reader(&output);
        let printed = output.lock().unwrap().clone();
        Ok(printed)
    }

    /// `<pid>` in a command is the pid the last service started printed.
    fn with_pid(&self, command: &str) -> Result<String, String> {
        if !command.contains("<pid>") {
            return Ok(command.to_string());
        }
        let last = self.running.last().ok_or("`<pid>`, but no service was started")?;
        let output = last.output.lock().unwrap();
        let pid = output
            .rsplit("(pid ")
            .next()
            .and_then(|rest| rest.split(')').next())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty())
            .ok_or_else(|| format!("`<pid>`, but `{}` printed no `(pid N)`", last.name))?;
        Ok(command.replace("<pid>", pid))
    }

    /// Starts `sh -c <command>` in a process group of its own (a terminal's
    /// Ctrl-C reaches the whole group), on the session's ports.
    fn spawn(&self, command: &str, output: Arc<Mutex<String>>) -> Result<Child, String> {
        let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(swap_ports(command, &self.ports))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(|e| e.to_string())?)
            .stderr(writer)
            .env_remove("RUST_LOG")
            .env("CARGO_TERM_QUIET", "true")
            .env("NO_COLOR", "1")
            .env("CURL_HOME", &self.scratch)
            .env("DATA_DIR", self.scratch.join("data"));
        for (variable, port) in PORT_VARIABLES {
            shell.env(variable, &self.ports[&port.to_string()]);
        }
        for (variable, port) in URL_VARIABLES {
            shell.env(variable, format!("http://127.0.0.1:{}", self.ports[&port.to_string()]));
        }
        // A process group of its own, as a terminal gives each command: a
        // Ctrl-C, `kill -INT -<group>`, reaches all of it. (Unix only: see
        // `main`.)
        #[cfg(unix)]
        shell.process_group(0);
        let child = shell.spawn().map_err(|e| format!("`{command}`: {e}"))?;
        drop(shell); // our copies of the pipe's writing end: the reader sees its end
        let back: BTreeMap<String, String> =
            self.ports.iter().map(|(w, f)| (f.clone(), w.clone())).collect();
        thread::spawn(move || {
            let mut lines = BufReader::new(reader);
            let mut line = Vec::new();
            while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                output.lock().unwrap().push_str(&swap_ports(&text, &back));
                line.clear();
            }
        });
        Ok(child)
    }

    /// Waits until the lines show in the terminals: one terminal's, or those
    /// of every service, since the last commands were pasted.
    fn wait_for_lines(
        &mut self,
        terminal: Option<usize>,
        expected: &str,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let ended = terminal.is_some_and(|i| self.running[i].has_ended());
            let shown = self.shown_since_mark(terminal);
            let result = compare::lines_among(&shown, expected);
            match result {
                Ok(()) => return Ok(()),
                Err(difference) if ended || Instant::now() > deadline => {
                    let what = if ended { "before it ended" } else { "in time" };
                    let lines: Vec<&str> = shown.lines().collect();
                    let last = lines[lines.len().saturating_sub(20)..].join("\n");
                    return Err(format!(
                        "the terminals did not show these lines {what}:\n{difference}\n\
                         The last lines they showed:\n{last}"
                    ));
                }
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    fn shown_since_mark(&self, terminal: Option<usize>) -> String {
        let mut shown = String::new();
        for (index, running) in self.running.iter().enumerate() {
            if terminal.is_some_and(|t| t != index) {
                continue;
            }
            let output = running.output.lock().unwrap();
            let mark = self.marks.get(index).copied().unwrap_or(0).min(output.len());
            shown.push_str(&output[mark..]);
        }
        shown
    }

    fn ctrl_c(&mut self, name: &str) -> Result<(), String> {
        if !self.running.iter().any(|t| t.name == name) {
            return Err(format!("`ctrl-c {name}`, but no service was started with that name"));
        }
        let Some(index) = self.running.iter_mut().rposition(|t| t.name == name && !t.has_ended())
        else {
            return Ok(()); // it had ended already (killed by an earlier command)
        };
        // The terminal stays in the list: what it printed while stopping counts.
        let terminal = &mut self.running[index];
        stop(&mut terminal.child, "INT");
        let deadline = Instant::now() + STOP_WITHIN;
        while terminal.child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                stop(&mut terminal.child, "KILL");
                return Err(format!("`{name}` did not stop within {STOP_WITHIN:?} of Ctrl-C"));
            }
            thread::sleep(POLL);
        }
        terminal.has_ended(); // and its last lines read
        Ok(())
    }

    /// How many services `cargo run -p <step>` starts: its `--help` lists them.
    fn services_of_the_step(&self) -> Result<usize, String> {
        let help = self.finish_plain(&format!("cargo run -p {} -- --help", self.package))?;
        let listed = help
            .lines()
            .skip_while(|line| !line.starts_with("Services:"))
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .filter(|line| {
                let mut words = line.split_whitespace();
                let name = words.next().unwrap_or("help");
                name != "help" && !line.contains("Not a service")
            })
            .count();
        Ok(listed)
    }

    fn finish_plain(&self, command: &str) -> Result<String, String> {
        let output = Command::new("sh")
            .args(["-c", command])
            .current_dir(&self.root)
            .env("CARGO_TERM_QUIET", "true")
            .output()
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Ctrl-C to every service still running, as a learner closing up.
    pub fn close(mut self) -> Result<(), String> {
        let mut result = Ok(());
        while let Some(index) = self.running.iter_mut().rposition(|t| !t.has_ended()) {
            let name = self.running[index].name.clone();
            if let Err(e) = self.ctrl_c(&name) {
                result = result.and(Err(e));
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for terminal in &mut self.running {
            stop(&mut terminal.child, "KILL");
        }
    }
}

impl Terminal {
    /// Has it ended, and has everything it printed been read?
    fn has_ended(&mut self) -> bool {
        if self.child.try_wait().ok().flatten().is_none() {
            return false;
        }
        wait_for_reader(&self.output);
        true
    }
}

/// The thread reading a terminal holds its output until the pipe closes.
fn wait_for_reader(output: &Arc<Mutex<String>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(output) > 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a signal to a terminal's whole process group, and reaps it if it ended.
fn stop(child: &mut Child, signal: &str) {
    let kill = format!("kill -{signal} -{}", child.id());
    let _ = Command::new("sh").args(["-c", &kill]).stderr(Stdio::null()).status();
    let _ = child.try_wait();
}

fn indent(commands: &[String]) -> String {
    commands.iter().map(|c| format!("    $ {c}")).collect::<Vec<_>>().join("\n")
}

/// The command without the `NAME=value` settings before it.
fn without_variables(command: &str) -> &str {
    let mut rest = command.trim_start();
    while let Some((first, after)) = rest.split_once(' ')
        && first.contains('=')
        && !first.starts_with('-')
    {
        rest = after.trim_start();
    }
    rest
}

/// A number that is a workshop port: 3000-3099, the registry, Jaeger, Prometheus.
fn is_workshop_port(number: u16) -> bool {
    (3000..3100).contains(&number) || [8500, 4318, 16686, 9090].contains(&number)
}

/// Every whole number in a text that fits a port.
fn numbers(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok())
}

/// Replaces every whole number that is a key of `map` with its value.
fn swap_ports(text: &str, map: &BTreeMap<String, String>) -> String {
    let mut swapped = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        swapped.push_str(map.get(&digits).unwrap_or(&digits));
        digits.clear();
        if c != '\0' {
            swapped.push(c);
        }
    }
    swapped
}

/// A free port for each workshop port, with as many digits: a length in
/// bytes that a service prints stays what the README shows. Each is bound
/// until all are found, so that they differ.
fn free_ports_like(workshop_ports: &[u16]) -> Result<Vec<u16>, String> {
    // Start somewhere that differs between runs, so that two runs at once
    // rarely try the same ports.
    let mut candidate = 4100 + (std::process::id() % 4000) as u16;
    let mut held = Vec::new();
    for &workshop in workshop_ports {
        let range = if workshop < 10000 { 4100..10000 } else { 20000..30000 };
        let mut tried = 0;
        let listener = loop {
            candidate = range.start + (candidate.wrapping_add(7919) % (range.end - range.start));
            tried += 1;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", candidate)) {
                break listener;
            }
            if tried > 1000 {
                return Err(format!("no free port in {range:?}"));
            }
        };
        held.push(listener);
    }
    held.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_swapped_as_whole_numbers_only() {
        let map = BTreeMap::from([("3002".to_string(), "41234".to_string())]);
        assert_eq!(
            swap_ports(
                "curl http://localhost:3002/ ; id service2-127.0.0.1-3002 ; 30020 13002",
                &map
            ),
            "curl http://localhost:41234/ ; id service2-127.0.0.1-41234 ; 30020 13002"
        );
    }
}
