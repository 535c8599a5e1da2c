//! Output that never makes a process wait for its terminal.
//!
//! A terminal can stop reading: Ctrl-S, a pager left open, `cargo run |
//! sleep 300`, a laptop's lid closed on an SSH session. A process that
//! writes to it then blocks on its next line: a service in the middle of a
//! request, which stops answering altogether, or the launcher, which then
//! blocks every service whose lines it carries, and Ctrl-C with them.
//!
//! So lines go through a bounded queue to a thread of their own, the only
//! one that ever waits for the terminal. When the queue is full, a line is
//! dropped and counted, and once the terminal reads again it is told how
//! many went missing, and where. Nothing a service does waits, and nothing
//! grows without bound. The launcher's output (`launcher.rs`) and a
//! service's log lines go out this way.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for a slow terminal; beyond that, lines are dropped.
const QUEUE: usize = 1000;

/// One output stream (stdout or stderr), written by a thread of its own.
#[derive(Clone)]
pub struct Output {
    queue: SyncSender<Message>,
    /// Lines the queue could not take since the last that it could.
    dropped: Arc<AtomicUsize>,
    /// Who says so when lines were dropped: `launcher`, `service2`.
    speaker: &'static str,
}

enum Message {
    Line(String),
    /// Answered once every line queued before it is written.
    Written(mpsc::Sender<()>),
}

impl Output {
    /// `to`, from now on written by a thread of its own.
    pub fn open(mut to: impl Write + Send + 'static, speaker: &'static str) -> Output {
        let (queue, messages) = mpsc::sync_channel(QUEUE);
        std::thread::spawn(move || {
            for message in messages {
                match message {
                    // Output going nowhere (a closed pipe) is no reason to stop.
                    Message::Line(line) => {
                        let _ = writeln!(to, "{line}");
                    }
                    Message::Written(written) => {
                        let _ = to.flush();
                        let _ = written.send(());
                    }
                }
            }
        });
        Output { queue, dropped: Arc::default(), speaker }
    }

    /// Queues a line without waiting. A line that does not fit is dropped;
    /// once the reader reads again, it is told how many were, and where.
    pub fn print(&self, line: String) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let lines = if dropped == 1 { "line" } else { "lines" };
            let notice = format!(
                "{} | {dropped} {lines} dropped while the terminal was not reading",
                self.speaker
            );
            if self.queue.try_send(Message::Line(notice)).is_err() {
                self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
                return;
            }
        }
        if self.queue.try_send(Message::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers once every line queued so far is written.
    pub fn written(&self) -> mpsc::Receiver<()> {
        let (written, on_written) = mpsc::channel();
        let queue = self.queue.clone();
        // A thread of its own: the queue stays full for as long as the
        // terminal does not read, and the caller decides how long to wait.
        std::thread::spawn(move || {
            let _ = queue.send(Message::Written(written));
        });
        on_written
    }

    /// Waits until every line queued so far is written, for `within` at
    /// most: the last lines of a process about to end.
    pub fn flush(&self, within: Duration) {
        let _ = self.written().recv_timeout(within);
    }
}

/// A writer for tracing's log lines: each event, formatted, is one line.
impl<'a> MakeWriter<'a> for Output {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine { output: self, text: Vec::new() }
    }
}

/// One log line as tracing writes it, queued whole when it is done.
pub struct LogLine<'a> {
    output: &'a Output,
    text: Vec<u8>,
}

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        if !line.is_empty() {
            self.output.print(line.to_string());
        }
    }
}
