//! The catalog: every instance registered, each with its checks, and the
//! status of each check.
//!
//! It is a small state machine. A check starts critical unless the
//! registration says otherwise (an instance has proved nothing yet), and
//! news from the instance moves it: a report sets its status and restarts
//! its TTL. Silence moves it too: a sweep, four times a second, turns a
//! check whose TTL ran out critical, and removes an instance critical for
//! longer than it asked to be kept.
//! That is how a registry learns that an instance died without a word
//! (`kill -9`, a lost machine): nobody tells it, its clock does.
//!
//! Every change a reader could see moves the index, Consul's
//! `X-Consul-Index`, so that a client can tell whether anything changed
//! without comparing answers.
//!
//! One lock guards it all. Every request holds it for a few map lookups,
//! never across an `.await`: a registry of a few hundred instances needs
//! nothing finer.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::http_checks::HttpProbe;
use super::registration::{LONGEST_CHECK_DURATION, NewInstance};

/// How often the registry looks for TTLs that ran out and for instances
/// critical for too long.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The most instances the registry keeps. It stands in for one Consul
/// agent, which holds the services of one machine: a step runs up to seven,
/// and a learner starts a few more. 256 is far above that, and keeps the
/// worst case (every instance with 8 checks of 4 KB output) near 10 MB.
pub(super) const MOST_INSTANCES: usize = 256;

/// The catalog behind its lock: what every handler is given.
pub(super) struct Registry {
    pub(super) catalog: Mutex<Catalog>,
}

pub(super) struct Catalog {
    /// Consul's `X-Consul-Index`: a number that grows with every change a
    /// reader could see, so that a client can tell whether anything changed.
    pub(super) index: u64,
    pub(super) instances: BTreeMap<String, Instance>,
}

#[derive(Clone)]
pub(super) struct Instance {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) address: String,
    pub(super) port: u16,
    pub(super) checks: Vec<InstanceCheck>,
}

/// A check the registry keeps on an instance, and what it last learned.
#[derive(Clone)]
pub(super) struct InstanceCheck {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: Status,
    pub(super) output: String,
    pub(super) probe: Probe,
    /// When the check last learned the instance's status.
    pub(super) last_checked: Option<SystemTime>,
    /// Remove the instance once this check has been critical this long.
    pub(super) deregister_after: Option<Duration>,
    pub(super) critical_since: Option<Instant>,
}

/// How a check learns the instance's health. Consul knows several ways;
/// this registry, the one that needs nothing but a clock.
#[derive(Clone)]
pub(super) enum Probe {
    /// The instance reports (a heartbeat) within `ttl`, or turns critical.
    Ttl { ttl: Duration, deadline: Instant },
    /// The registry calls the instance (see `http_checks.rs`).
    Http(HttpProbe),
}

impl Probe {
    pub(super) fn ttl(ttl: Duration) -> Probe {
        Probe::Ttl { ttl, deadline: later(Instant::now(), ttl) }
    }

    /// Whether the check should have heard from the instance by `now`.
    fn overdue(&self, now: Instant) -> bool {
        match self {
            Probe::Ttl { deadline, .. } => now >= *deadline,
            Probe::Http(_) => false,
        }
    }

    /// Consul's name for the kind of check.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Probe::Ttl { .. } => "ttl",
            Probe::Http(_) => "http",
        }
    }
}

/// A check's status, in Consul's words; an instance's is its worst check's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// The registry has `MOST_INSTANCES` already.
pub(super) struct RegistryFull;

/// What came of a status report.
pub(super) enum Reported {
    Done,
    UnknownCheck,
    /// Only TTL checks take reports: the registry runs HTTP checks itself.
    NotTtl,
}

impl Registry {
    pub(super) fn new() -> Registry {
        // Seeded from the clock, so that a restarted registry never hands
        // out an index a client saw before the restart.
        let index =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |t| t.as_millis() as u64);
        Registry { catalog: Mutex::new(Catalog { index, instances: BTreeMap::new() }) }
    }

    /// The catalog, even after a panic while it was locked: one bad request
    /// must not make every later one fail.
    fn lock(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn read<R>(&self, look: impl FnOnce(&Catalog) -> R) -> R {
        look(&self.lock())
    }

    pub(super) fn write<R>(&self, change: impl FnOnce(&mut Catalog) -> R) -> R {
        change(&mut self.lock())
    }
}

impl Catalog {
    pub(super) fn bump(&mut self) {
        self.index += 1;
    }

    /// Adds the instance, or replaces it if its ID is known; a new one only
    /// while there is room.
    pub(super) fn register(&mut self, new: NewInstance) -> Result<(), RegistryFull> {
        if self.instances.len() >= MOST_INSTANCES && !self.instances.contains_key(&new.id) {
            return Err(RegistryFull);
        }
        self.bump();
        let now = Instant::now();
        let previous = self.instances.remove(&new.id);
        // Checks already known keep their status: an instance that
        // registers again must not turn critical because of it.
        let checks = new
            .checks
            .into_iter()
            .map(|definition| {
                let known = previous.iter().flat_map(|p| &p.checks).find(|c| c.id == definition.id);
                let status = known.map_or(definition.status, |check| check.status);
                InstanceCheck {
                    critical_since: known
                        .map_or((status == Status::Critical).then_some(now), |check| {
                            check.critical_since
                        }),
                    output: known.map(|check| check.output.clone()).unwrap_or_default(),
                    last_checked: known.and_then(|check| check.last_checked),
                    probe: match (known.map(|check| &check.probe), definition.probe) {
                        // Services register again every second: an unchanged
                        // HTTP check keeps its schedule, or it would run then too.
                        (Some(Probe::Http(known)), Probe::Http(new)) if known.is_same_as(&new) => {
                            Probe::Http(known.clone())
                        }
                        (_, probe) => probe,
                    },
                    id: definition.id,
                    name: definition.name,
                    status,
                    deregister_after: definition.deregister_after,
                }
            })
            .collect();
        if previous.is_none() {
            info!("{} registered as {}", new.id, new.name);
        }
        let instance =
            Instance { id: new.id, name: new.name, address: new.address, port: new.port, checks };
        self.instances.insert(instance.id.clone(), instance);
        Ok(())
    }

    pub(super) fn check_mut(&mut self, check_id: &str) -> Option<&mut InstanceCheck> {
        self.instances
            .values_mut()
            .find_map(|instance| instance.checks.iter_mut().find(|check| check.id == check_id))
    }

    /// A status report for a check (a heartbeat, for a TTL check): it also
    /// restarts the TTL.
    pub(super) fn report(&mut self, check_id: &str, status: Status, output: String) -> Reported {
        let Some(check) = self.check_mut(check_id) else { return Reported::UnknownCheck };
        match &mut check.probe {
            Probe::Ttl { ttl, deadline } => *deadline = later(Instant::now(), *ttl),
            Probe::Http(_) => return Reported::NotTtl,
        }
        check.last_checked = Some(SystemTime::now());
        self.set_status(check_id, status, output);
        Reported::Done
    }

    /// Changes a check's status and output; a change a reader can see, so
    /// it bumps the index.
    pub(super) fn set_status(&mut self, check_id: &str, status: Status, output: String) {
        let Some(check) = self.check_mut(check_id) else { return };
        if check.status == status && check.output == output {
            return;
        }
        if check.status != status {
            info!("check {check_id} is now {}", status.as_str());
        }
        check.critical_since = match status {
            Status::Critical => check.critical_since.or(Some(Instant::now())),
            _ => None,
        };
        check.status = status;
        check.output = output;
        self.bump();
    }

    /// Turns checks whose TTL ran out critical, and removes instances that
    /// have been critical for longer than they asked to be kept.
    pub(super) fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut dead = Vec::new();
        for instance in self.instances.values() {
            for check in &instance.checks {
                if check.status != Status::Critical && check.probe.overdue(now) {
                    expired.push(check.id.clone());
                }
                let critical_for = check.critical_since.map(|since| now.duration_since(since));
                if let (Some(critical_for), Some(limit)) = (critical_for, check.deregister_after)
                    && critical_for > limit
                {
                    dead.push((instance.id.clone(), limit));
                }
            }
        }
        for check_id in expired {
            let last_output = self.check_mut(&check_id).map(|check| check.output.clone());
            let output = match last_output.as_deref() {
                Some("") | None => "TTL expired".to_string(),
                Some(last) => format!("TTL expired (last output: {last})"),
            };
            self.set_status(&check_id, Status::Critical, output);
        }
        for (id, limit) in dead {
            if self.instances.remove(&id).is_some() {
                info!(
                    "{id} deregistered: critical for longer than {}",
                    humantime::format_duration(limit)
                );
                self.bump();
            }
        }
    }
}

/// `now + after`. The bounds on what a client may ask for keep it far from
/// overflowing; were one missed, a day from now is as good as never.
pub(super) fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or_else(|| now + LONGEST_CHECK_DURATION)
}

impl Instance {
    pub(super) fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|check| check.status)
            .max_by_key(|status| *status as u8)
            .unwrap_or(Status::Passing)
    }

    /// Where it answers, as Consul reads a registration: no Address means
    /// this machine, and an IPv6 address goes in brackets.
    pub(super) fn host_and_port(&self) -> String {
        match self.address.as_str() {
            "" => format!("127.0.0.1:{}", self.port),
            ipv6 if ipv6.contains(':') => format!("[{ipv6}]:{}", self.port),
            address => format!("{address}:{}", self.port),
        }
    }
}

/// The registry's clock: a sweep every `SWEEP_EVERY`, for as long as it runs.
pub(super) async fn keep_sweeping(registry: Arc<Registry>) {
    let mut ticks = actix_web::rt::time::interval(SWEEP_EVERY);
    loop {
        ticks.tick().await;
        // A panic here would end the sweeps for good, and every TTL with
        // them: skip this sweep instead.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|catalog| catalog.sweep(Instant::now()))
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::super::registration::parse_registration;
    use super::*;

    #[test]
    fn a_panic_while_the_catalog_is_locked_leaves_it_usable() {
        let registry = Registry::new();
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.write(|_| panic!("a bug, while the catalog is locked"));
        }));
        assert!(panicked.is_err());

        let entry = br#"{ "Name": "service2", "Check": { "TTL": "10s" } }"#;
        let new = parse_registration(entry).unwrap();
        assert!(registry.write(|catalog| catalog.register(new)).is_ok());
        assert_eq!(registry.read(|catalog| catalog.instances.len()), 1, "it still takes writes");
        registry.write(|catalog| catalog.sweep(Instant::now()));
    }
}
