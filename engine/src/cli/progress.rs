//! Live progress of a run: a line when a step starts and finishes (with state and duration),
//! the step's log lines as they come, and a summary. Colors only on a terminal (and never with
//! `NO_COLOR`); plain `[step] ...` lines otherwise.

use std::io::Write;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::run::{Event, LogStream, Run, StepRun, StepState};

#[derive(Debug, Clone, Copy)]
pub enum Style {
    Tty { color: bool },
    Plain,
}

pub struct Progress {
    style: Style,
    to_stderr: bool,
}

impl Progress {
    pub fn new(style: Style, to_stderr: bool) -> Self {
        Progress { style, to_stderr }
    }

    pub async fn consume(self, mut events: UnboundedReceiver<Event>) {
        let mut buf = Vec::with_capacity(4096);
        while let Some(event) = events.recv().await {
            self.render(&event, &mut buf);
            // Drain what is already queued before writing, so bursts cost one write.
            while let Ok(more) = events.try_recv() {
                self.render(&more, &mut buf);
                if buf.len() > 64 * 1024 {
                    break;
                }
            }
            self.flush(&mut buf);
        }
        self.flush(&mut buf);
    }

    fn flush(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let _ = if self.to_stderr {
            std::io::stderr().lock().write_all(buf)
        } else {
            std::io::stdout().lock().write_all(buf)
        };
        buf.clear();
    }

    fn paint(&self, code: &str, text: &str) -> String {
        match self.style {
            Style::Tty { color: true } => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }

    fn render(&self, event: &Event, out: &mut Vec<u8>) {
        let plain = matches!(self.style, Style::Plain);
        let line = match event {
            Event::StepStarted { id, attempt } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                if plain {
                    format!("[{id}] started{again}")
                } else {
                    format!("{} {id}{again}", self.paint("36", "▶"))
                }
            }
            Event::StepLog { id, stream, line } => {
                let tag = match stream {
                    LogStream::Warn => "warning: ",
                    LogStream::Error => "error: ",
                    LogStream::Debug => "debug: ",
                    _ => "",
                };
                if plain {
                    format!("[{id}] {tag}{line}")
                } else {
                    format!("  {} {tag}{line}", self.paint("2", &format!("{id} │")))
                }
            }
            Event::StepRetrying {
                id,
                attempt,
                delay_ms,
                error,
            } => {
                let text = format!(
                    "attempt {attempt} failed: {error}; retrying in {}",
                    ms(*delay_ms)
                );
                if plain {
                    format!("[{id}] {text}")
                } else {
                    format!("{} {id} {text}", self.paint("33", "↻"))
                }
            }
            Event::StepFinished(step) => self.finished(step),
            Event::RunFinished(run) => self.summary(run),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }

    fn finished(&self, step: &StepRun) -> String {
        let took = step.duration_ms.map(ms).unwrap_or_default();
        let detail = match step.state {
            StepState::Failed => {
                let coe = if step.continue_on_error {
                    " (continue-on-error)"
                } else {
                    ""
                };
                format!(
                    "failed{coe} after {took}: {}",
                    step.error.as_deref().unwrap_or("unknown error")
                )
            }
            StepState::Skipped | StepState::Cancelled => {
                format!(
                    "{}: {}",
                    step.state.as_str(),
                    step.reason.as_deref().unwrap_or("")
                )
            }
            state => format!("{} in {took}", state.as_str()),
        };
        match self.style {
            Style::Plain => format!("[{}] {detail}", step.id),
            _ => format!("{} {} {detail}", self.symbol(step.state), step.id),
        }
    }

    fn symbol(&self, state: StepState) -> String {
        match state {
            StepState::Succeeded => self.paint("32", "✔"),
            StepState::Cached => self.paint("32", "↺"),
            StepState::Failed => self.paint("31", "✘"),
            StepState::Cancelled => self.paint("31", "■"),
            StepState::Skipped => self.paint("33", "○"),
            StepState::Pending | StepState::Running => self.paint("2", "·"),
        }
    }

    fn summary(&self, run: &Run) -> String {
        let mut counts: Vec<(StepState, usize)> = Vec::new();
        for s in &run.steps {
            match counts.iter_mut().find(|(st, _)| *st == s.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((s.state, 1)),
            }
        }
        let counts: Vec<String> = counts
            .iter()
            .map(|(st, n)| format!("{n} {}", st.as_str()))
            .collect();
        let mut out = String::from("\n");
        let width = run
            .steps
            .iter()
            .map(|s| s.id.chars().count())
            .max()
            .unwrap_or(0)
            .min(48);
        for s in &run.steps {
            let took = s.duration_ms.map(ms).unwrap_or_else(|| "-".to_owned());
            let sym = match self.style {
                Style::Plain => String::new(),
                _ => format!("{} ", self.symbol(s.state)),
            };
            out.push_str(&format!(
                "  {sym}{:<width$}  {:<10} {took:>8}\n",
                s.id,
                s.state.as_str()
            ));
        }
        let verdict = match self.style {
            Style::Tty { color: true } => match run.state.as_str() {
                "succeeded" => self.paint("1;32", "succeeded"),
                other => self.paint("1;31", other),
            },
            _ => run.state.as_str().to_owned(),
        };
        let c = &run.cache;
        let cache = if c.hits + c.misses + c.uncacheable > 0 {
            format!(
                "\ncache: {} hit, {} missed, {} saved, {} not cacheable",
                c.hits, c.misses, c.saved, c.uncacheable
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "run {} {verdict} in {} ({}){cache}\nworkspace: {}",
            run.id,
            ms(run.duration_ms),
            counts.join(", "),
            run.workspace
        ));
        out
    }
}

fn ms(ms: u64) -> String {
    if ms == 0 {
        "<1ms".to_owned()
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
