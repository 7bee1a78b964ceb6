//! The step's log: the host side of the `log` import and the capture of the guest's stdout and
//! stderr, all delivered line by line to the step's [`LogSink`] as they happen.
//!
//! Limits, so that a plugin cannot flood the scheduler or the store:
//! - one line is at most [`MAX_LINE_BYTES`]; the rest of a longer line is dropped and the line
//!   ends with a marker;
//! - one step writes at most [`MAX_LOG_BYTES`] in total (log calls, stdout and stderr together);
//!   after that a single "log truncated" line is sent and everything else is dropped.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::bindings::log::{Host, Level};
use crate::state::StepState;
use crate::{LogSink, LogStream};

/// Longest line passed to the sink, in bytes. Longer lines are cut and marked.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// Most log bytes one step may produce (all streams together).
pub const MAX_LOG_BYTES: usize = 10 << 20;
/// How many of the last stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 3;

const LINE_CUT_MARKER: &str = " [line truncated]";

/// The sink of one step, with the byte budget its streams share.
pub(crate) struct StepLog {
    sink: Arc<dyn LogSink>,
    budget: Mutex<Budget>,
}

#[derive(Default)]
struct Budget {
    used: usize,
    exhausted: bool,
}

impl StepLog {
    pub(crate) fn new(sink: Arc<dyn LogSink>) -> Arc<Self> {
        Arc::new(StepLog {
            sink,
            budget: Mutex::new(Budget::default()),
        })
    }

    /// Send one line (without its newline), within the step's budget.
    pub(crate) fn line(&self, stream: LogStream, text: &str) {
        {
            let mut budget = lock(&self.budget);
            if budget.exhausted {
                return;
            }
            let cost = text.len() + 1;
            if budget.used + cost > MAX_LOG_BYTES {
                budget.exhausted = true;
                drop(budget);
                self.sink.line(
                    LogStream::Warn,
                    &format!(
                        "log truncated: the step wrote more than {} MiB of log; the rest is dropped",
                        MAX_LOG_BYTES >> 20
                    ),
                );
                return;
            }
            budget.used += cost;
        }
        self.sink.line(stream, text);
    }

    /// Send a message that may span several lines, each capped at [`MAX_LINE_BYTES`].
    pub(crate) fn message(&self, stream: LogStream, message: &str) {
        let message = message.strip_suffix('\n').unwrap_or(message);
        for line in message.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.len() > MAX_LINE_BYTES {
                let cut = floor_char_boundary(line, MAX_LINE_BYTES);
                self.line(stream, &format!("{}{LINE_CUT_MARKER}", &line[..cut]));
            } else {
                self.line(stream, line);
            }
        }
    }
}

impl Host for StepState {
    async fn log(&mut self, level: Level, message: String) {
        let stream = match level {
            Level::Debug => LogStream::Debug,
            Level::Info => LogStream::Info,
            Level::Warn => LogStream::Warn,
            Level::Error => LogStream::Error,
        };
        self.log.message(stream, &message);
    }
}

/// A guest's stdout or stderr: bytes are split into lines and each complete line is sent to the
/// step's sink at once. Clones share the same buffer (WASI may open the stream several times).
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    stream: LogStream,
    log: Arc<StepLog>,
    pending: Vec<u8>,
    /// The current line passed [`MAX_LINE_BYTES`]: drop bytes until its end.
    cut: bool,
    tail: VecDeque<String>,
}

impl CapturedOutput {
    pub(crate) fn new(stream: LogStream, log: Arc<StepLog>) -> Self {
        CapturedOutput {
            inner: Arc::new(Mutex::new(LineBuffer {
                stream,
                log,
                pending: Vec::new(),
                cut: false,
                tail: VecDeque::new(),
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        lock(&self.inner).write(bytes);
    }

    /// Send what is left of an unfinished last line.
    pub(crate) fn finish(&self) {
        let mut buffer = lock(&self.inner);
        if !buffer.pending.is_empty() || buffer.cut {
            buffer.emit();
        }
    }

    /// The last few lines written, oldest first (used to explain a crash).
    pub(crate) fn tail(&self) -> Vec<String> {
        lock(&self.inner).tail.iter().cloned().collect()
    }
}

impl LineBuffer {
    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (chunk, ends_line) = match bytes.iter().position(|b| *b == b'\n') {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            bytes = &bytes[chunk.len() + usize::from(ends_line)..];
            if !self.cut {
                let room = MAX_LINE_BYTES - self.pending.len();
                if chunk.len() > room {
                    self.pending.extend_from_slice(&chunk[..room]);
                    self.cut = true;
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            if ends_line {
                self.emit();
            }
        }
    }

    /// Send the pending bytes as one line.
    fn emit(&mut self) {
        let mut bytes = std::mem::take(&mut self.pending);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if std::mem::take(&mut self.cut) {
            line.push_str(LINE_CUT_MARKER);
        }
        self.log.line(self.stream, &line);
        if !line.trim().is_empty() {
            if self.tail.len() == STDERR_TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A log sink for plugin code run outside a step (`describe`, `validate`): lines go to tracing.
pub(crate) struct TracingSink {
    pub(crate) origin: String,
}

impl LogSink for TracingSink {
    fn line(&self, stream: LogStream, text: &str) {
        tracing::debug!(plugin = %self.origin, ?stream, "{text}");
    }
}

/// Lock a mutex, recovering from poisoning: the data is only log buffers.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The largest index `<= at` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(LogStream, String)>>);
    impl LogSink for Collect {
        fn line(&self, stream: LogStream, text: &str) {
            lock(&self.0).push((stream, text.to_owned()));
        }
    }

    fn lines(sink: &Collect) -> Vec<String> {
        lock(&sink.0).iter().map(|(_, l)| l.clone()).collect()
    }

    #[test]
    fn bytes_are_split_into_lines_across_writes() {
        let sink = Arc::new(Collect::default());
        let out = CapturedOutput::new(LogStream::Stdout, StepLog::new(sink.clone()));
        out.write_bytes(b"hel");
        out.write_bytes(b"lo\r\nworld\n\npartial");
        assert_eq!(lines(&sink), ["hello", "world", ""]);
        out.finish();
        assert_eq!(lines(&sink), ["hello", "world", "", "partial"]);
        assert_eq!(out.tail(), ["hello", "world", "partial"]);
    }

    #[test]
    fn a_long_line_is_cut_and_marked() {
        let sink = Arc::new(Collect::default());
        let out = CapturedOutput::new(LogStream::Stderr, StepLog::new(sink.clone()));
        out.write_bytes(&vec![b'x'; MAX_LINE_BYTES + 10]);
        out.write_bytes(b"yyy\nnext\n");
        let got = lines(&sink);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE_BYTES + LINE_CUT_MARKER.len());
        assert!(got[0].ends_with(LINE_CUT_MARKER));
        assert_eq!(got[1], "next");
    }

    #[test]
    fn the_log_stops_after_its_budget_with_one_truncation_line() {
        let sink = Arc::new(Collect::default());
        let log = StepLog::new(sink.clone());
        let line = "z".repeat(60_000);
        for _ in 0..200 {
            log.message(LogStream::Info, &line);
        }
        let got = lock(&sink.0);
        let kept = MAX_LOG_BYTES / 60_001;
        assert_eq!(got.len(), kept + 1);
        assert!(
            got[..kept]
                .iter()
                .all(|(s, l)| *s == LogStream::Info && l.len() == 60_000)
        );
        assert!(got[kept].1.starts_with("log truncated"));
        assert_eq!(got[kept].0, LogStream::Warn);
    }

    #[test]
    fn a_log_message_with_newlines_becomes_several_lines() {
        let sink = Arc::new(Collect::default());
        let log = StepLog::new(sink.clone());
        log.message(LogStream::Warn, "one\ntwo\r\n");
        assert_eq!(lines(&sink), ["one", "two"]);
    }
}
