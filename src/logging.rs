//! The process's log output: `env_logger` formatting, written to stderr in batches while the
//! server runs.
//!
//! The access log is one line per request. Written straight to stderr, each line is its own
//! `write(2)`; under load that cost a fifth of the throughput (README, performance). While the
//! [`Flusher`] service runs, lines are collected in a buffer instead, written when it holds
//! [`FLUSH_BYTES`] and otherwise at most [`FLUSH_EVERY`] after they were logged (as nginx's
//! `access_log ... buffer= flush=` does). Before it starts and after it stops (at shutdown),
//! lines go straight to stderr. It runs as a Pingora service so that it starts after the fork
//! of `daemon` mode (a thread started before would not exist in the daemon).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

/// A buffer this full is written at once, by the thread that filled it.
pub const FLUSH_BYTES: usize = 32 * 1024;
/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Access lines are JSON objects, alone on their line (`access_log.format: json`).
static JSON_ACCESS: AtomicBool = AtomicBool::new(false);

/// The target of access lines.
pub const ACCESS: &str = "tether::access";

/// Makes access lines JSON objects (`true`) or text.
pub fn set_json_access(json: bool) {
    JSON_ACCESS.store(json, Ordering::Relaxed);
}

/// Whether access lines are JSON objects.
pub fn json_access() -> bool {
    JSON_ACCESS.load(Ordering::Relaxed)
}
/// Set while the [`Flusher`] runs: only then are lines buffered.
static BATCHING: AtomicBool = AtomicBool::new(false);

/// Installs the logger: `RUST_LOG` filters (default `info`), output to stderr, each line
/// `[time LEVEL target] message`, except JSON access lines: the object alone.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Pipe(Box::new(BatchedStderr)))
        .format(|buf, record| {
            if record.target() == ACCESS && json_access() {
                writeln!(buf, "{}", record.args())
            } else {
                writeln!(
                    buf,
                    "[{} {:<5} {}] {}",
                    buf.timestamp(),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        })
        .init();
}

/// Writes whatever is buffered to stderr now.
pub fn flush() {
    let mut buffer = lock();
    write_stderr(&buffer);
    buffer.clear();
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u8>> {
    // A panic while holding the lock leaves bytes, not a broken invariant: keep logging.
    BUFFER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_stderr(bytes: &[u8]) {
    if !bytes.is_empty() {
        // Nowhere to report a failure to write the log.
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

/// The service that writes the buffer out every [`FLUSH_EVERY`] while the server runs, and
/// everything left when it shuts down.
pub struct Flusher;

#[async_trait]
impl BackgroundService for Flusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        BATCHING.store(true, Ordering::Release);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => flush(),
                _ = shutdown.changed() => break,
            }
        }
        BATCHING.store(false, Ordering::Release);
        flush();
    }
}

/// `env_logger`'s target: buffers each formatted record while batching, else writes it.
struct BatchedStderr;

impl Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if !BATCHING.load(Ordering::Acquire) {
            write_stderr(bytes);
            return Ok(bytes.len());
        }
        let mut buffer = lock();
        buffer.extend_from_slice(bytes);
        if buffer.len() >= FLUSH_BYTES {
            // Written under the lock, so lines keep their order.
            write_stderr(&buffer);
            buffer.clear();
        }
        Ok(bytes.len())
    }

    /// `env_logger` flushes after every record; batching flushes on its own schedule.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
