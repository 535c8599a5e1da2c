//! The command line: with no service, `cargo run` starts every service of
//! the step, each in a process of its own, as they would run in
//! production; with a service's name (`-- service2 --port 3013`) it runs
//! that service alone. How a service runs, and how the launcher starts
//! them all, is the frame's (`platform/run.rs`, `platform/launcher.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01_starter::platform::{RunOptions, StoppedBy, launch_all, run};
use step01_starter::{service1, service2};

/// Workshop step 01: two services answering JSON.
#[derive(Parser)]
#[command(
    version,
    subcommand_value_name = "SERVICE",
    subcommand_help_heading = "Services",
    after_help = "With no SERVICE, every service of the step starts, each as a child process;\n\
                  Ctrl-C stops them all. `<SERVICE> --help` lists that service's options."
)]
struct Cli {
    /// Address to listen on: 127.0.0.1 is this machine only, 0.0.0.0 every network
    #[arg(long, global = true, env = "BIND_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Set by the launcher on the services it starts: stop when stdin closes.
    #[arg(long, global = true, hide = true)]
    supervised: bool,

    #[command(subcommand)]
    service: Option<Service>,
}

#[derive(Subcommand)]
enum Service {
    /// Answers {"name":"service 1"} on port 3002
    Service1(service1::Options),
    /// Answers {"name":"service 2"} on port 3003
    Service2(service2::Options),
}

/// The services `cargo run` starts, in this order.
const SERVICES: [&str; 2] = [service1::NAME, service2::NAME];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stopped_by = if cli.supervised { StoppedBy::Launcher } else { StoppedBy::CtrlC };
    match cli.service {
        None => launch_all(&cli.host, &SERVICES),
        Some(Service::Service1(options)) => run(
            RunOptions { service: service1::NAME, host: cli.host, port: options.port, stopped_by },
            service1::server,
        ),
        Some(Service::Service2(options)) => run(
            RunOptions { service: service2::NAME, host: cli.host, port: options.port, stopped_by },
            service2::server,
        ),
    }
}
