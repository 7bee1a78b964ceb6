//! Pipeline -> Plan: plugins resolved and checked against the step's grants and config, static
//! matrices expanded, and the DAG built (petgraph). A Plan is pure data; the plugins it names are
//! loaded separately (see [`Resolved`]) so the scheduler can be tested without wasmtime.

mod refs;
mod resolve;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_host::PluginInfo;
use kiln_pipeline::{Axis, Pipeline};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde_json::Value;

pub use refs::step_references;
pub use resolve::{PluginLoader, Resolved, resolve};

/// Most instances a static `matrix:` may expand to.
pub const MAX_MATRIX_INSTANCES: usize = 256;

/// The resolved DAG of one pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: Arc<Pipeline>,
    /// Distinct plugins the steps use, by digest.
    pub plugins: Vec<PlanPlugin>,
    /// One node per step, or per instance of a static matrix; edges go from a need to the step
    /// that needs it. Node indices follow the pipeline's order, which breaks ties.
    pub graph: DiGraph<Node, ()>,
}

/// A plugin as the plan knows it.
#[derive(Debug, Clone)]
pub struct PlanPlugin {
    pub origin: String,
    pub digest: String,
    pub info: PluginInfo,
}

/// A unit of scheduling: a step, or one instance of a step with a static matrix.
#[derive(Debug, Clone)]
pub struct Node {
    /// `build`, or `image[app=web]` for a matrix instance.
    pub id: String,
    /// Index of the step in `pipeline.steps`.
    pub step: usize,
    /// Index into `Plan::plugins`.
    pub plugin: usize,
    pub instance: Instance,
    /// Steps (indices) whose outputs this step's expressions read.
    pub reads: Vec<usize>,
}

/// How a node relates to `matrix:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Instance {
    /// No matrix.
    Single,
    /// One combination of a static matrix, axes in the order written.
    Static(Vec<(String, Value)>),
    /// A matrix with an expression axis: expanded when the node becomes ready.
    Dynamic,
}

impl Plan {
    /// Build the graph for `pipeline` whose step `i` uses `plugins[plugin_of_step[i]]`.
    pub fn new(
        pipeline: Arc<Pipeline>,
        plugins: Vec<PlanPlugin>,
        plugin_of_step: &[usize],
    ) -> Plan {
        let mut graph = DiGraph::new();
        let mut nodes_of_step: Vec<Vec<NodeIndex>> = Vec::with_capacity(pipeline.steps.len());
        let index_of = step_indices(&pipeline);
        for (i, step) in pipeline.steps.iter().enumerate() {
            let reads = refs::steps_read(step, &index_of);
            let plugin = plugin_of_step.get(i).copied().unwrap_or_default();
            let instances = match &step.matrix {
                None => vec![Instance::Single],
                Some(m)
                    if m.axes
                        .iter()
                        .any(|(_, a)| matches!(a.value, Axis::Dynamic(_))) =>
                {
                    vec![Instance::Dynamic]
                }
                Some(m) => {
                    let axes: Vec<(String, Vec<Value>)> = m
                        .axes
                        .iter()
                        .map(|(name, axis)| match &axis.value {
                            Axis::Values(v) => (name.value.clone(), v.clone()),
                            Axis::Dynamic(_) => (name.value.clone(), Vec::new()),
                        })
                        .collect();
                    cartesian(&axes).into_iter().map(Instance::Static).collect()
                }
            };
            let ids: Vec<NodeIndex> = instances
                .into_iter()
                .map(|instance| {
                    let id = match &instance {
                        Instance::Static(values) => instance_id(&step.id.value, values),
                        _ => step.id.value.clone(),
                    };
                    graph.add_node(Node {
                        id,
                        step: i,
                        plugin,
                        instance,
                        reads: reads.clone(),
                    })
                })
                .collect();
            for need in &step.needs {
                if let Some(&n) = index_of.get(need.value.as_str()) {
                    for &from in nodes_of_step.get(n).map(Vec::as_slice).unwrap_or_default() {
                        for &to in &ids {
                            graph.add_edge(from, to, ());
                        }
                    }
                }
            }
            nodes_of_step.push(ids);
        }
        Plan {
            pipeline,
            plugins,
            graph,
        }
    }

    /// Names of every secret some step may read.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pipeline
            .steps
            .iter()
            .flat_map(|s| s.secrets.iter().map(|n| n.value.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Name of the plugin a node runs.
    pub fn plugin_name(&self, node: &Node) -> &str {
        self.plugins
            .get(node.plugin)
            .map_or("?", |p| p.info.name.as_str())
    }

    /// The DAG as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for idx in self.graph.node_indices() {
            let node = &self.graph[idx];
            let matrix = if node.instance == Instance::Dynamic {
                " [matrix]"
            } else {
                ""
            };
            let label = format!("{}{matrix}<br/>{}", node.id, self.plugin_name(node));
            out.push_str(&format!(
                "    n{}[\"{}\"]\n",
                idx.index(),
                label.replace('"', "#quot;")
            ));
        }
        for e in self.graph.edge_references() {
            out.push_str(&format!(
                "    n{} --> n{}\n",
                e.source().index(),
                e.target().index()
            ));
        }
        out
    }

    /// The DAG in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph {:?} {{\n    rankdir=TB;\n    node [shape=box];\n",
            self.pipeline.name.value
        );
        for idx in self.graph.node_indices() {
            let node = &self.graph[idx];
            let style = if node.instance == Instance::Dynamic {
                ", style=dashed"
            } else {
                ""
            };
            let label = format!("{}\n{}", node.id, self.plugin_name(node));
            out.push_str(&format!("    n{} [label={label:?}{style}];\n", idx.index()));
        }
        for e in self.graph.edge_references() {
            out.push_str(&format!(
                "    n{} -> n{};\n",
                e.source().index(),
                e.target().index()
            ));
        }
        out.push_str("}\n");
        out
    }
}

/// Step id -> index in `pipeline.steps`.
pub fn step_indices(pipeline: &Pipeline) -> BTreeMap<&str, usize> {
    pipeline
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), i))
        .collect()
}

/// Every combination of the axes' values, first axis outermost.
pub fn cartesian(axes: &[(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    let mut out: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (name, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut combo = prefix.clone();
                    combo.push((name.clone(), v.clone()));
                    combo
                })
            })
            .collect();
    }
    out
}

/// `image[app=web,arch=amd64]`.
pub fn instance_id(step: &str, values: &[(String, Value)]) -> String {
    let inner: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("{k}={}", kiln_expr::to_display_string(v)))
        .collect();
    format!("{step}[{}]", inner.join(","))
}
