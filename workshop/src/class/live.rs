//! The class as the server holds it while it runs: the room behind a lock,
//! a version that goes up with each change for the pages that follow the
//! board, and the room's file kept up to date.
//!
//! A change is written at once, unless the last write is less than a
//! second old; then the next tick writes it. A class of 300 checking at
//! once is a write a second, not 300, and a restart loses at most that
//! second (a graceful stop, none).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header;
use tokio::sync::watch;

use super::outline::Outline;
use super::page;
use super::problem::Problem;
use super::room::Room;

/// How long the page's request for the board is held when nothing changes:
/// the longest "3 min ago" can be stale.
const HOLD: Duration = Duration::from_secs(15);
/// Pages following the board at once; beyond, a page is answered at once
/// and polls (a projector, a laptop or two: a handful is the norm).
const MOST_FOLLOWERS: usize = 64;
/// The least time between two writes of the room's file.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

pub struct Class {
    room: Mutex<Room>,
    pub outline: Outline,
    stuck_after: Duration,
    /// Goes up with each change, for the pages that follow the board.
    version: watch::Sender<u64>,
    followers: AtomicUsize,
    /// The version last written to the file, and when (None: not yet).
    saved: Mutex<(u64, Option<Instant>)>,
    /// The address learners type, and whether only this laptop reaches it.
    pub learners_url: String,
    pub local_only: bool,
}

impl Class {
    pub fn new(
        room: Room,
        outline: Outline,
        stuck_after: Duration,
        learners_url: String,
        local_only: bool,
    ) -> Class {
        // A page left open across a restart must not wait for a version the
        // new server has not reached: versions start from the clock.
        let version = now_millis();
        Class {
            room: Mutex::new(room),
            outline,
            stuck_after,
            version: watch::channel(version).0,
            followers: AtomicUsize::new(0),
            saved: Mutex::new((version, None)),
            learners_url,
            local_only,
        }
    }

    pub fn room(&self) -> MutexGuard<'_, Room> {
        // A handler that panicked left the room as whole as any other.
        self.room.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The code of the request, checked before anything else is read.
    pub fn admit(&self, request: &HttpRequest) -> Result<(), Problem> {
        let given = request.headers().get(header::AUTHORIZATION);
        let given = given.and_then(|value| value.to_str().ok());
        let Some(code) = given.and_then(|value| value.strip_prefix("Bearer ")) else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "No class code",
                "this class needs its code: Authorization: Bearer <code>",
            ));
        };
        match self.room().code_matches(code) {
            true => Ok(()),
            false => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "Wrong class code",
                "that is not this class's code: it is on the class's page and in the \
                 instructor's terminal",
            )),
        }
    }

    /// The board as it is now, and its version.
    pub fn board(&self) -> (u64, String) {
        let room = self.room();
        let version = *self.version.borrow();
        (version, page::board(&room, &self.outline, now(), self.stuck_after))
    }

    /// Returns once the board's version is past `after`, or after HOLD.
    pub async fn changed_since(&self, after: u64) {
        let mut changes = self.version.subscribe();
        let following = Following::start(&self.followers);
        if following.among < MOST_FOLLOWERS {
            let changed = changes.wait_for(|version| *version > after);
            let _ = actix_web::rt::time::timeout(HOLD, changed).await;
        }
    }

    /// After a change to `room`: wakes the pages that follow the board, and
    /// writes the file unless it was written less than SAVE_EVERY ago.
    pub fn changed(&self, room: &Room) {
        self.version.send_modify(|version| *version += 1);
        let last_write = self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).1;
        if last_write.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            self.save(room);
        }
    }

    /// Writes the room's file if it has changed since it was last written:
    /// on each tick, and when the class stops.
    pub fn save_if_changed(&self) {
        let room = self.room();
        let written = self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        if written != *self.version.borrow() {
            self.save(&room);
        }
    }

    fn save(&self, room: &Room) {
        if let Err(error) = room.save() {
            eprintln!("warning: the class could not be kept in its file: {error}");
        }
        let mut saved = self.saved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *saved = (*self.version.borrow(), Some(Instant::now()));
    }
}

/// A page waiting for the board to change, counted until it is answered or
/// gone (a closed tab drops the request, and this with it).
struct Following<'a> {
    followers: &'a AtomicUsize,
    /// How many were following before this one.
    among: usize,
}

impl<'a> Following<'a> {
    fn start(followers: &'a AtomicUsize) -> Following<'a> {
        Following { followers, among: followers.fetch_add(1, Ordering::SeqCst) }
    }
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.followers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Seconds since the Unix epoch, by this laptop's clock.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn now_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
