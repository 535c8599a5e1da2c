//! The command line: with no service, `cargo run` starts every service of
//! the step, each in a process of its own, as they would run in
//! production; with a service's name (`-- service2 --port 3013`) it runs
//! that service alone. How a service runs, and how the launcher starts
//! them all, is the frame's (`platform/run.rs`, `platform/launcher.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step04_service_discovery::platform::{RunOptions, StoppedBy, launch_all, run};
use step04_service_discovery::{gateway, registry, service1, service2};

/// Workshop step 04: a service registry and client-side discovery.
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
    /// The API gateway on port 3001: /service1/..., /service2/..., and / for both
    Gateway(gateway::Options),
    /// Answers what service2 answers, on port 3002
    Service1(service1::Options),
    /// Answers {"name":"service 2"} on port 3003, registered in the registry
    Service2(service2::Options),
    /// The service registry on port 8500 (Consul's HTTP API); dashboard at /
    Registry(registry::Options),
}

/// The services `cargo run` starts, in this order. The registry comes
/// first: the others register with it, or ask it, as soon as they start.
const SERVICES: [&str; 4] = [registry::NAME, service1::NAME, service2::NAME, gateway::NAME];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stopped_by = if cli.supervised { StoppedBy::Launcher } else { StoppedBy::CtrlC };
    let run_options = |service, port, registration| RunOptions {
        service,
        host: cli.host.clone(),
        port,
        stopped_by,
        registration,
    };
    match cli.service {
        None => launch_all(&cli.host, &SERVICES),
        Some(Service::Gateway(options)) => {
            run(run_options(gateway::NAME, options.port, None), |listener| {
                gateway::server(listener, options)
            })
        }
        Some(Service::Service1(options)) => {
            run(run_options(service1::NAME, options.port, None), |listener| {
                service1::server(listener, options)
            })
        }
        Some(Service::Service2(options)) => run(
            run_options(service2::NAME, options.port, Some(options.registration)),
            service2::server,
        ),
        Some(Service::Registry(options)) => {
            run(run_options(registry::NAME, options.port, None), |listener| {
                registry::server_with_acl_token(listener, options.acl_token)
            })
        }
    }
}
