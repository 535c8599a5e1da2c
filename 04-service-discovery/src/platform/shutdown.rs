//! What tells a service to stop. A service stops gracefully: it stops
//! accepting connections and lets the requests in flight finish, so that no
//! client sees a request cut in half. Two things can ask it to:
//!
//! - Ctrl-C, or SIGTERM (what `kill`, Docker and Kubernetes send), for a
//!   service run alone, and for the launcher itself;
//! - the launcher, for the services it started, by closing their stdin.
//!   That works the same on every operating system (Windows has no
//!   SIGTERM), lets the launcher choose the order, and stops the services
//!   too if the launcher itself is killed, instead of leaving them behind
//!   holding their ports.

use std::io;

/// What tells a process to stop: see [`shutdown_signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoppedBy {
    /// Ctrl-C or SIGTERM: a service run alone, and the launcher itself.
    CtrlC,
    /// The launcher, closing the service's stdin (SIGTERM still works).
    Launcher,
}

/// Resolves when the process should stop: on Ctrl-C or SIGTERM (Unix) for
/// `StoppedBy::CtrlC`; when stdin closes (or on SIGTERM) for
/// `StoppedBy::Launcher`.
pub async fn shutdown_signal(stopped_by: StoppedBy) {
    let interrupted = async {
        // Ctrl-C in a terminal reaches every process of the step at once;
        // under the launcher, it is the launcher's to act on.
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await
            }
            if stopped_by == StoppedBy::CtrlC {
                return;
            }
        }
    };
    let launcher_gone = async {
        match stopped_by {
            StoppedBy::Launcher => stdin_closed().await,
            StoppedBy::CtrlC => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupted => {}
        _ = terminate() => {}
        _ = launcher_gone => {}
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            sigterm.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Windows has no SIGTERM; Ctrl-C and the launcher closing stdin remain.
#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

async fn stdin_closed() {
    // A plain thread, because a read from stdin blocks and cannot be
    // cancelled: it must not hold up the async runtime when it shuts down.
    let (closed, on_closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = closed.send(());
    });
    let _ = on_closed.await;
}
