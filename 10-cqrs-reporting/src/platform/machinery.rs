//! A service's own machinery: the paths it serves for the step's other
//! programs and for the people who run it, not for its clients, and the
//! registry's paths that every service calls all day. One list, read
//! wherever a request is treated differently for being machinery:
//!
//! - the gateway does not pass a service's own paths on
//!   (`/api/service2/healthz` is a 404): they are no part of a service's
//!   API, and what they say or do (take an instance out of rotation) is not
//!   for its clients;
//! - routine requests, which come every second or so all day, are left out
//!   of the request log, and from step 08 of traces: they would bury the
//!   requests people make (the registry's dashboard shows the health
//!   checks).
//!
//! A step that brings a path of the machinery adds it to the list.

/// A path of the machinery, by who calls it: that decides how it is treated.
#[derive(Clone, Copy, Debug)]
pub enum Machinery {
    /// A service's own path that another program calls every second or so:
    /// the gateway does not pass it on; it is neither logged nor traced.
    Routine(&'static str),
    /// A service's own path that a person calls to look: the gateway does
    /// not pass it on; it is logged and traced like any request.
    OnDemand(&'static str),
    /// A path of the registry that every service calls every second or so:
    /// it is neither logged nor traced.
    Registry(&'static str),
}

/// The machinery of this step's services.
pub const MACHINERY: [Machinery; 6] = [
    // Health, which the registry checks on every instance every second.
    Machinery::Routine("/healthz"),
    // The state of a service's circuit breakers, for a person to look at.
    Machinery::OnDemand("/breakers"),
    // A service's metrics, which Prometheus scrapes every few seconds.
    Machinery::Routine("/metrics"),
    // An event feed, which the reports service follows with long polls.
    Machinery::Routine("/events"),
    // A service registering again, whenever the registry has forgotten it,
    // and checking that the registry answers, in its own health checks.
    Machinery::Registry("/v1/agent/service/register"),
    Machinery::Registry("/v1/status/leader"),
];

/// A service's own paths, by their first segment (`healthz`): what the
/// gateway does not pass on.
pub fn own_paths() -> Vec<&'static str> {
    let own = MACHINERY.iter().filter_map(|machinery| match machinery {
        Machinery::Routine(path) | Machinery::OnDemand(path) => path.strip_prefix('/'),
        Machinery::Registry(_) => None,
    });
    own.collect()
}

/// Whether `segment`, the first of a path, is one of a service's own paths.
pub fn is_own(segment: &str) -> bool {
    own_paths().contains(&segment)
}

/// The paths of routine requests, neither logged nor traced.
pub fn routine_paths() -> impl Iterator<Item = &'static str> {
    MACHINERY.iter().filter_map(|machinery| match machinery {
        Machinery::Routine(path) | Machinery::Registry(path) => Some(*path),
        Machinery::OnDemand(_) => None,
    })
}

/// Whether a request to `path` is routine.
pub fn is_routine(path: &str) -> bool {
    routine_paths().any(|routine| routine == path)
}
