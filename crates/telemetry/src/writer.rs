//! Log lines leave the request threads without a system call: [`BatchWriter`] appends each line
//! to a shared buffer, and one writer thread writes the buffer out every
//! [`FLUSH_INTERVAL`] (or sooner, once it holds [`HIGH_WATER`] bytes). A busy server makes one
//! `write` per interval instead of one per line, and request threads wake nobody: the writer
//! thread is only woken for the first line after it went idle.
//!
//! Nothing is dropped: above [`MAX_BUFFERED`] bytes a logger waits for the writer (backpressure).
//! [`BatchGuard`] (dropped at exit, or [`BatchGuard::flush`]) writes out what is buffered.
//!
//! `tracing-appender`'s non-blocking writer was measured first: it wakes its writer thread for
//! nearly every line under load, which cost more than the lines themselves.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Longest time a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Buffered bytes that make the writer write at once rather than at the next interval.
pub const HIGH_WATER: usize = 256 * 1024;
/// Buffered bytes above which loggers wait for the writer.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    buffer: Vec<u8>,
    /// The writer thread is asleep with nothing to write and must be woken.
    idle: bool,
    /// Batches taken out of `buffer` by the writer thread, and those it has written: a flush
    /// waits until the batch holding its lines is written.
    taken: u64,
    written: u64,
    /// Someone waits in [`Shared::flush`]: write without waiting for the interval.
    flushing: bool,
    closing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes loggers waiting for room and flushes waiting for a batch.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the buffer intact: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.closing {
            return; // the writer thread is gone: nowhere to write to
        }
        while state.buffer.len() >= MAX_BUFFERED && !state.closing {
            self.work.notify_one();
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.buffer.extend_from_slice(line);
        if state.idle || state.buffer.len() >= HIGH_WATER {
            state.idle = false;
            self.work.notify_one();
        }
    }

    /// Waits until everything appended so far has been written.
    fn flush(&self) {
        let mut state = self.lock();
        if state.closing {
            return;
        }
        let target = state.taken + u64::from(!state.buffer.is_empty());
        state.idle = false;
        state.flushing = true;
        self.work.notify_one();
        while state.written < target && !state.closing {
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The writer thread: sleeps while idle, else writes a batch every interval.
fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    let mut state = shared.lock();
    loop {
        if state.buffer.is_empty() {
            if state.closing {
                break;
            }
            state.idle = true;
            state = shared
                .work
                .wait_while(state, |s| s.idle && !s.closing)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        // Let the batch fill up unless it is already large or we are closing.
        if state.buffer.len() < HIGH_WATER && !state.closing && !state.flushing {
            state = shared
                .work
                .wait_timeout(state, FLUSH_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut state.buffer, &mut batch);
        state.taken += 1;
        state.flushing = false;
        // Loggers waiting for room can go on.
        shared.done.notify_all();
        drop(state);
        // Nowhere to report a failed write to: the line is lost, as with a plain stdout.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > HIGH_WATER * 4 {
            batch = Vec::new();
        }
        state = shared.lock();
        state.written += 1;
        shared.done.notify_all();
    }
}

/// A [`MakeWriter`] whose lines are written out by a background thread in batches. Each
/// `write` call must be whole lines (the JSON and pretty layers write one event per call).
#[derive(Debug, Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Owns the writer thread: [`BatchGuard::flush`] waits for the buffered lines to be written;
/// dropping the guard writes them out and stops the thread.
#[derive(Debug)]
pub struct BatchGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the writer thread over `out`.
    pub fn new<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, BatchGuard)> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, out)
            })?;
        let guard = BatchGuard {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        Ok((Self { shared }, guard))
    }
}

impl BatchGuard {
    /// Waits until every line logged so far has been written.
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        self.shared.done.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.shared.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::new(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        guard.flush();
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "lines of one thread stay in order");
            next[t] += 1;
        }
        assert_eq!(next, [10_000; 4], "no line lost");
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 40_000 / 10, "{writes} writes for 40000 lines");
        drop(guard);
    }

    #[test]
    fn a_lone_line_is_written_without_a_flush_and_drop_writes_the_rest() {
        let sink = Sink::default();
        let (mut writer, guard) = BatchWriter::new(sink.clone()).unwrap();
        writer.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.bytes.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.write_all(b"two\n").unwrap();
        drop(guard);
        assert_eq!(&*sink.bytes.lock().unwrap(), b"one\ntwo\n");
        // After the guard is gone lines are accepted and dropped, never a hang.
        writer.write_all(b"three\n").unwrap();
    }
}
