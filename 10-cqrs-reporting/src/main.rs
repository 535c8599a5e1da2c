//! The command line: with no service, `cargo run` starts every service of
//! the step, each in a process of its own, as they would run in
//! production; with a service's name (`-- service2 --port 3013`) it runs
//! that service alone. How a service runs, and how the launcher starts
//! them all, is the frame's (`platform/run.rs`, `platform/launcher.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step10_cqrs_reporting::platform::{RunOptions, StoppedBy, Stopping, launch_all, run};
use step10_cqrs_reporting::{
    accounts, demo, gateway, registry, reports, service1, service2, users,
};

/// Workshop step 10: CQRS: users and accounts take commands, a report service follows their events.
#[derive(Parser)]
#[command(
    version,
    subcommand_value_name = "SERVICE",
    subcommand_help_heading = "Services",
    after_help = "With no SERVICE, every service of the step starts, each as a child process;\n\
                  Ctrl-C stops them all. `<SERVICE> --help` lists that service's options.\n\n\
                  Traces go to OTEL_EXPORTER_OTLP_ENDPOINT (default http://127.0.0.1:4318, \
                  Jaeger's OTLP port);\nOTEL_SDK_DISABLED=true turns them off."
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
    /// The API gateway on port 3001: /api/<service>/... to any registered service, / for all
    Gateway(gateway::Options),
    /// Answers what service2 answers, on port 3002, registered in the registry
    Service1(service1::Options),
    /// Answers {"name":"service 2"} on port 3003, registered in the registry
    Service2(service2::Options),
    /// The service registry on port 8500 (Consul's HTTP API); dashboard at /
    Registry(registry::Options),
    /// Users (commands and an event feed) on port 3005, with a database of its own
    Users(users::Options),
    /// Accounts (commands and an event feed) on port 3006, with a database of its own
    Accounts(accounts::Options),
    /// Reports on port 3007: a view of users with their balances, built from the feeds
    Reports(reports::Options),
    /// Not a service: plays the workshop's client scenario through the running step
    Demo(demo::Options),
}

/// The services `cargo run` starts, in this order. The registry comes
/// first: the others register with it, or ask it, as soon as they start.
const SERVICES: [&str; 7] = [
    registry::NAME,
    service1::NAME,
    service2::NAME,
    users::NAME,
    accounts::NAME,
    reports::NAME,
    gateway::NAME,
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stopped_by = if cli.supervised { StoppedBy::Launcher } else { StoppedBy::CtrlC };
    // The event feeds' long polls answer at once when their service stops.
    let stopping = Stopping::default();
    let run_options = |service, port, registration| RunOptions {
        service,
        host: cli.host.clone(),
        port,
        stopped_by,
        registration,
        stopping: stopping.clone(),
    };
    match cli.service {
        None => launch_all(&cli.host, &SERVICES),
        Some(Service::Gateway(options)) => run(
            run_options(gateway::NAME, options.port, Some(options.registration.clone())),
            |listener| gateway::server(listener, options),
        ),
        Some(Service::Service1(options)) => run(
            run_options(service1::NAME, options.port, Some(options.registration.clone())),
            |listener| service1::server(listener, options),
        ),
        Some(Service::Service2(options)) => run(
            run_options(service2::NAME, options.port, Some(options.registration)),
            service2::server,
        ),
        Some(Service::Registry(options)) => {
            run(run_options(registry::NAME, options.port, None), |listener| {
                registry::server_with_acl_token(listener, options.acl_token)
            })
        }
        Some(Service::Users(options)) => run(
            run_options(users::NAME, options.port, Some(options.registration.clone())),
            |listener| users::server(listener, options, stopping.clone()),
        ),
        Some(Service::Accounts(options)) => run(
            run_options(accounts::NAME, options.port, Some(options.registration.clone())),
            |listener| accounts::server(listener, options, stopping.clone()),
        ),
        Some(Service::Reports(options)) => run(
            run_options(reports::NAME, options.port, Some(options.registration.clone())),
            |listener| reports::server(listener, options),
        ),
        Some(Service::Demo(options)) => demo::run(options),
    }
}
