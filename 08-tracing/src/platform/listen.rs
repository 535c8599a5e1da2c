//! Binding a service's port, before anything else happens. "Address already
//! in use" is the classic classroom error: the previous step is still
//! running in another terminal. So each error a learner can meet here says
//! what to do about it, naming the service, the port and the option to
//! change, instead of the operating system's few words.

use std::io;
use std::net::TcpListener;

/// Binds the service's port, or says in a few lines what went wrong and
/// what to do about it.
pub fn listen(service: &str, host: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind((host, port)).map_err(|error| {
        let place = format!("{service} cannot listen on {host}:{port}");
        let port_variable = format!("{}_PORT", service.to_uppercase());
        match error.kind() {
            io::ErrorKind::AddrInUse => format!(
                "{place}: the port is already in use.\n\
                 Is a previous step, or another copy of this one, still running? \
                 Stop it with Ctrl-C in its terminal,\n\
                 or give {service} another port: {port_variable}=<N> for the whole step,\n\
                 or `{service} --port <N>` when it runs alone."
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "{place}: {host} is not an address of this machine.\n\
                 Use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every network)."
            ),
            io::ErrorKind::PermissionDenied => format!(
                "{place}: ports below 1024 need administrator rights.\n\
                 Give {service} a port above 1023: {port_variable}=<N>, or `--port <N>` alone."
            ),
            _ => {
                format!("{place}: {error}.\nCheck --host (BIND_HOST) and --port ({port_variable}).")
            }
        }
    })
}
