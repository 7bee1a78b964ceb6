//! BuildKit status updates rendered as plain lines, in the style of `buildctl --progress=plain`:
//!
//! ```text
//! #1 [internal] load build definition from Dockerfile
//! #1 DONE 0.0s
//! #4 [2/2] RUN make
//! #4 0.412 cc -o app main.c
//! #4 DONE 1.3s
//! #5 [3/3] COPY . .
//! #5 CACHED
//! ```
//!
//! Vertices are numbered in the order they first appear; a log chunk is split into lines and
//! a partial line waits for the rest (or for the vertex to finish).

use std::collections::HashMap;

use bollard::grpc::build::moby::buildkit::v1::StatusResponse;

#[derive(Default)]
struct VertexState {
    number: usize,
    name: String,
    announced: bool,
    done: bool,
    started: Option<(i64, i32)>,
    partial: Vec<u8>,
}

/// Turns a stream of [`StatusResponse`]s into lines.
#[derive(Default)]
pub struct Renderer {
    vertices: HashMap<String, VertexState>,
    next: usize,
    /// Vertex errors, in the order they were reported (the build's failure reasons).
    errors: Vec<String>,
}

fn seconds(a: (i64, i32), b: (i64, i32)) -> f64 {
    (b.0 - a.0) as f64 + f64::from(b.1 - a.1) / 1e9
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
    }

    /// The errors BuildKit reported for failed vertices, with their names.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    fn vertex(&mut self, digest: &str) -> &mut VertexState {
        if !self.vertices.contains_key(digest) {
            self.next += 1;
            let v = VertexState {
                number: self.next,
                ..VertexState::default()
            };
            self.vertices.insert(digest.to_string(), v);
        }
        // Inserted above when missing.
        self.vertices
            .get_mut(digest)
            .unwrap_or_else(|| unreachable!("vertex inserted above"))
    }

    /// Renders one status update; `out` receives each complete line.
    pub fn update(&mut self, status: &StatusResponse, out: &mut dyn FnMut(&str)) {
        for v in &status.vertexes {
            let state = self.vertex(&v.digest);
            if !v.name.is_empty() {
                state.name = v.name.clone();
            }
            let number = state.number;
            if let Some(t) = &v.started {
                state.started.get_or_insert((t.seconds, t.nanos));
            }
            if !state.announced && (v.started.is_some() || v.cached || v.completed.is_some()) {
                state.announced = true;
                out(&format!("#{number} {}", state.name));
            }
            if state.done {
                continue;
            }
            if v.cached {
                state.done = true;
                out(&format!("#{number} CACHED"));
            } else if !v.error.is_empty() {
                state.done = true;
                flush(state, out);
                out(&format!("#{number} ERROR: {}", v.error));
                let name = state.name.clone();
                self.errors.push(format!("{name}: {}", v.error));
            } else if let Some(t) = &v.completed {
                state.done = true;
                flush(state, out);
                let took = state
                    .started
                    .map(|s| seconds(s, (t.seconds, t.nanos)).max(0.0))
                    .unwrap_or(0.0);
                out(&format!("#{number} DONE {took:.1}s"));
            }
        }
        for log in &status.logs {
            let state = self.vertex(&log.vertex);
            let number = state.number;
            let elapsed = match (state.started, &log.timestamp) {
                (Some(s), Some(t)) => Some(seconds(s, (t.seconds, t.nanos)).max(0.0)),
                _ => None,
            };
            state.partial.extend_from_slice(&log.msg);
            while let Some(end) = state.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = state.partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                let text = text.trim_end_matches('\r');
                match elapsed {
                    Some(e) => out(&format!("#{number} {e:.3} {text}")),
                    None => out(&format!("#{number} {text}")),
                }
            }
        }
        for w in &status.warnings {
            let state = self.vertex(&w.vertex);
            let number = state.number;
            out(&format!(
                "#{number} WARNING: {}",
                String::from_utf8_lossy(&w.short)
            ));
        }
    }

    /// Prints what is left of partial lines (at the end of a build).
    pub fn finish(&mut self, out: &mut dyn FnMut(&str)) {
        let mut states: Vec<&mut VertexState> = self.vertices.values_mut().collect();
        states.sort_by_key(|s| s.number);
        for state in states {
            flush(state, out);
        }
    }
}

fn flush(state: &mut VertexState, out: &mut dyn FnMut(&str)) {
    if !state.partial.is_empty() {
        let text = String::from_utf8_lossy(&state.partial).into_owned();
        state.partial.clear();
        out(&format!("#{} {}", state.number, text.trim_end()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::grpc::build::moby::buildkit::v1::{Vertex, VertexLog};

    fn ts(seconds: i64, nanos: i32) -> Option<bollard_buildkit_proto::google::protobuf::Timestamp> {
        Some(bollard_buildkit_proto::google::protobuf::Timestamp { seconds, nanos })
    }

    fn render(updates: &[StatusResponse]) -> Vec<String> {
        let mut r = Renderer::new();
        let mut lines = Vec::new();
        for u in updates {
            r.update(u, &mut |l| lines.push(l.to_string()));
        }
        r.finish(&mut |l| lines.push(l.to_string()));
        lines
    }

    #[test]
    fn a_vertex_is_numbered_announced_logged_and_timed() {
        let started = StatusResponse {
            vertexes: vec![Vertex {
                digest: "sha256:a".into(),
                name: "[2/2] RUN make".into(),
                started: ts(10, 0),
                ..Vertex::default()
            }],
            ..StatusResponse::default()
        };
        let log = StatusResponse {
            logs: vec![VertexLog {
                vertex: "sha256:a".into(),
                timestamp: ts(10, 500_000_000),
                stream: 1,
                msg: b"cc -o app\npartial".to_vec(),
            }],
            ..StatusResponse::default()
        };
        let done = StatusResponse {
            vertexes: vec![Vertex {
                digest: "sha256:a".into(),
                name: "[2/2] RUN make".into(),
                started: ts(10, 0),
                completed: ts(11, 250_000_000),
                ..Vertex::default()
            }],
            ..StatusResponse::default()
        };
        assert_eq!(
            render(&[started, log, done]),
            [
                "#1 [2/2] RUN make",
                "#1 0.500 cc -o app",
                "#1 partial",
                "#1 DONE 1.2s"
            ]
        );
    }

    #[test]
    fn a_cached_vertex_says_so_once_and_an_error_is_kept() {
        let cached = Vertex {
            digest: "sha256:c".into(),
            name: "[1/2] FROM base".into(),
            cached: true,
            completed: ts(1, 0),
            ..Vertex::default()
        };
        let failed = Vertex {
            digest: "sha256:f".into(),
            name: "[2/2] RUN false".into(),
            started: ts(1, 0),
            completed: ts(2, 0),
            error: "process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                .into(),
            ..Vertex::default()
        };
        let update = StatusResponse {
            vertexes: vec![cached.clone(), failed],
            ..StatusResponse::default()
        };
        let again = StatusResponse {
            vertexes: vec![cached],
            ..StatusResponse::default()
        };
        let mut r = Renderer::new();
        let mut lines = Vec::new();
        r.update(&update, &mut |l| lines.push(l.to_string()));
        r.update(&again, &mut |l| lines.push(l.to_string()));
        assert_eq!(
            lines,
            [
                "#1 [1/2] FROM base",
                "#1 CACHED",
                "#2 [2/2] RUN false",
                "#2 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
            ]
        );
        assert_eq!(r.errors().len(), 1);
        assert!(r.errors()[0].starts_with("[2/2] RUN false: process"));
    }
}
