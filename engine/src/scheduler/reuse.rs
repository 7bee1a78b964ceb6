//! Taking over results of an earlier run of the same plan ("re-run only what failed").
//!
//! A step instance is reused when the earlier run finished it successfully and every node it
//! needs was itself reused in this run: its inputs are then the same as before. As soon as one
//! node runs again, everything downstream of it runs again too. Reused records keep their
//! outputs, state, attempts and duration, with a `reason` saying where they came from; the
//! workspace must be the earlier run's (the files reused steps wrote are there).

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::plan::Node;
use crate::run::StepRun;

/// Step records of an earlier run that a new run may take over.
#[derive(Debug, Clone, Default)]
pub struct PreviousResults {
    run_id: String,
    /// Successful instances by id.
    steps: HashMap<String, StepRun>,
}

impl PreviousResults {
    /// The successful step instances of run `run_id` (other states are ignored).
    pub fn new(run_id: impl Into<String>, steps: impl IntoIterator<Item = StepRun>) -> Self {
        PreviousResults {
            run_id: run_id.into(),
            steps: steps
                .into_iter()
                .filter(|s| s.state.is_success())
                .map(|s| (s.id.clone(), s))
                .collect(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The scheduler's bookkeeping of what was reused.
pub(super) struct Reuse {
    previous: Option<std::sync::Arc<PreviousResults>>,
    /// Per node: some unit of it ran (or failed) in this run, so its dependents must run too.
    fresh: Vec<bool>,
}

impl Reuse {
    pub(super) fn new(previous: Option<std::sync::Arc<PreviousResults>>, nodes: usize) -> Self {
        Reuse {
            previous,
            fresh: vec![false; nodes],
        }
    }

    /// The earlier record of instance `id` of `node`, when it may be taken over.
    pub(super) fn take(
        &self,
        graph: &DiGraph<Node, ()>,
        node: NodeIndex,
        id: &str,
    ) -> Option<StepRun> {
        let previous = self.previous.as_ref()?;
        if self.fresh[node.index()]
            || graph
                .neighbors_directed(node, Direction::Incoming)
                .any(|n| self.fresh[n.index()])
        {
            return None;
        }
        let mut record = previous.steps.get(id)?.clone();
        record.reason = Some(format!("reused from run `{}`", previous.run_id));
        Some(record)
    }

    /// A unit of `node` runs (or failed) in this run.
    pub(super) fn ran(&mut self, node: NodeIndex) {
        if let Some(f) = self.fresh.get_mut(node.index()) {
            *f = true;
        }
    }
}
