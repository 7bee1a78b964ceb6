//! Checks that look at the steps together: duplicate ids, unknown `needs`, cycles, and what
//! each expression may read. Pure: nothing here knows about plugins.

use std::collections::{HashMap, VecDeque};

use crate::keys::{self, list, suggest};
use crate::parse::{Owner, ReadStep, Reader, RefUse};

/// The dependency graph of the steps that have an id.
struct Graph {
    /// Step index -> indices of the steps it needs (known ones, no self-edges), in order.
    edges: Vec<Vec<usize>>,
    /// Step index -> every step it needs, directly or not, sorted.
    reach: Vec<Vec<usize>>,
}

impl Graph {
    fn needs_transitively(&self, from: usize, to: usize) -> bool {
        self.reach
            .get(from)
            .is_some_and(|r| r.binary_search(&to).is_ok())
    }
}

/// Run every check, reporting into `r`.
pub(crate) fn check(r: &mut Reader<'_, '_>, steps: &[ReadStep], refs: Vec<RefUse>) {
    let ids = ids(r, steps);
    let graph = needs(r, steps, &ids);
    cycles(r, steps, &graph);
    for u in refs {
        reference(r, steps, &ids, &graph, &u);
    }
}

/// Index of the first step with each id; reports later duplicates.
fn ids<'a>(r: &mut Reader<'_, '_>, steps: &'a [ReadStep]) -> HashMap<&'a str, usize> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if !s.has_id {
            continue;
        }
        let id = s.step.id.value.as_str();
        match ids.get(id).and_then(|&first| steps.get(first)) {
            Some(first) => {
                let line = r.line(first.step.id.span);
                r.error(
                    "K101",
                    s.step.id.span,
                    format!("duplicate step id `{id}`"),
                    Some(format!(
                        "the first step `{id}` is on line {line}; step ids must be unique"
                    )),
                );
            }
            None => {
                ids.insert(id, i);
            }
        }
    }
    ids
}

/// Resolve `needs`; reports unknown steps and steps needing themselves.
fn needs(r: &mut Reader<'_, '_>, steps: &[ReadStep], ids: &HashMap<&str, usize>) -> Graph {
    let mut edges = vec![Vec::new(); steps.len()];
    for (i, s) in steps.iter().enumerate() {
        for need in &s.step.needs {
            let name = need.value.as_str();
            if s.has_id && name == s.step.id.value {
                r.error(
                    "K103",
                    need.span,
                    format!("{} needs itself", s.label),
                    Some(format!("remove `{name}` from its `needs`")),
                );
                continue;
            }
            match ids.get(name) {
                Some(&j) => {
                    if let Some(e) = edges.get_mut(i)
                        && !e.contains(&j)
                    {
                        e.push(j);
                    }
                }
                None => {
                    let mut known: Vec<&str> = ids.keys().copied().collect();
                    known.sort_unstable();
                    let hint = match suggest(name, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => "no step has an id".to_owned(),
                        None => format!("the steps are {}", list(&known)),
                    };
                    r.error(
                        "K102",
                        need.span,
                        format!("unknown step `{name}` in `needs` of {}", s.label),
                        Some(hint),
                    );
                }
            }
        }
    }
    let reach = (0..steps.len()).map(|i| reachable(&edges, i)).collect();
    Graph { edges, reach }
}

/// Every node reachable from `start` in one or more edges, sorted.
fn reachable(edges: &[Vec<usize>], start: usize) -> Vec<usize> {
    let mut seen = vec![false; edges.len()];
    let mut stack: Vec<usize> = edges.get(start).cloned().unwrap_or_default();
    let mut out = Vec::new();
    while let Some(n) = stack.pop() {
        match seen.get_mut(n) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        out.push(n);
        if let Some(next) = edges.get(n) {
            stack.extend(next.iter().copied());
        }
    }
    out.sort_unstable();
    out
}

/// Report each cycle once (one per strongly connected group of steps), as a path starting at
/// the group's first step in the file, pointing at that step's `needs` entry.
fn cycles(r: &mut Reader<'_, '_>, steps: &[ReadStep], graph: &Graph) {
    let mut reported = vec![false; steps.len()];
    for i in 0..steps.len() {
        if reported.get(i).copied().unwrap_or(true) || !graph.needs_transitively(i, i) {
            continue;
        }
        let group: Vec<usize> = (0..steps.len())
            .filter(|&j| {
                j == i || (graph.needs_transitively(i, j) && graph.needs_transitively(j, i))
            })
            .collect();
        for &j in &group {
            if let Some(x) = reported.get_mut(j) {
                *x = true;
            }
        }
        let Some(path) = shortest_cycle(&graph.edges, &group, i) else {
            continue;
        };
        let names: Vec<String> = path
            .iter()
            .filter_map(|&n| steps.get(n))
            .map(|s| format!("`{}`", s.step.id.value))
            .collect();
        let Some(first) = steps.get(i) else { continue };
        let next = path.get(1).and_then(|&n| steps.get(n));
        let span = next
            .and_then(|n| {
                first
                    .step
                    .needs
                    .iter()
                    .find(|need| need.value == n.step.id.value)
            })
            .map_or(first.step.id.span, |need| need.span);
        r.error(
            "K103",
            span,
            format!("dependency cycle: {}", names.join(" -> ")),
            Some(
                "each step needs the next one, so none can start; remove one of these `needs`"
                    .to_owned(),
            ),
        );
    }
}

/// The shortest path `start -> ... -> start` inside `group` (breadth first, edges in the order
/// they were written, so the answer is deterministic).
fn shortest_cycle(edges: &[Vec<usize>], group: &[usize], start: usize) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in edges.get(n)? {
            if !group.contains(&m) {
                continue;
            }
            if m == start {
                let mut path = vec![start];
                let mut at = n;
                while at != start {
                    path.push(at);
                    at = *parent.get(&at)?;
                }
                path.get_mut(1..)?.reverse();
                path.push(start);
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    None
}

/// Check one context path read by an expression.
fn reference(
    r: &mut Reader<'_, '_>,
    steps: &[ReadStep],
    ids: &HashMap<&str, usize>,
    graph: &Graph,
    u: &RefUse,
) {
    let Some(root) = u.path.first().map(String::as_str) else {
        return;
    };
    let span = u.span;
    if !keys::ROOTS.contains(&root) {
        let hint = match suggest(root, keys::ROOTS.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expressions can read {}", list(keys::ROOTS)),
        };
        r.error(
            "K105",
            span,
            format!("unknown context `{root}` in expression"),
            Some(hint),
        );
        return;
    }
    let (index, step) = match u.owner {
        Owner::Pipeline => {
            let hint = match root {
                "secrets" => Some(
                    "list the secret in the `secrets` of the step that uses it, and read it in that step's `env`",
                ),
                "steps" | "matrix" => {
                    Some("move this variable to the `env` of the step that uses it")
                }
                _ => None,
            };
            if let Some(hint) = hint {
                r.error(
                    "K105",
                    span,
                    format!("the pipeline-level `env` cannot read `{root}`"),
                    Some(hint.to_owned()),
                );
            }
            return;
        }
        Owner::Step(i) => match steps.get(i) {
            Some(s) => (i, s),
            None => return,
        },
    };
    let label = &step.label;
    match root {
        "steps" => {
            let Some(target) = u.path.get(1) else {
                r.error(
                    "K105",
                    span,
                    "`steps` must be followed by a step id".to_owned(),
                    Some("write `steps.<id>.outputs.<name>`".to_owned()),
                );
                return;
            };
            if step.has_id && *target == step.step.id.value {
                r.error(
                    "K105",
                    span,
                    format!("{label} cannot read its own outputs"),
                    Some("outputs exist only once the step has finished".to_owned()),
                );
                return;
            }
            let Some(&j) = ids.get(target.as_str()) else {
                let mut known: Vec<&str> = ids.keys().copied().collect();
                known.sort_unstable();
                let hint = match suggest(target, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "no step has this id".to_owned(),
                };
                r.error(
                    "K105",
                    span,
                    format!("unknown step `{target}` in `steps.{target}`"),
                    Some(hint),
                );
                return;
            };
            if !graph.needs_transitively(index, j) {
                r.error(
                    "K105",
                    span,
                    format!("{label} reads `steps.{target}` but does not need `{target}`"),
                    Some(format!(
                        "add `{target}` to `needs` of {label}, so that its outputs exist when it runs"
                    )),
                );
                return;
            }
            match u.path.get(2).map(String::as_str) {
                Some("outputs") => {}
                None => r.error(
                    "K105",
                    span,
                    format!("`steps.{target}` must be followed by `outputs`"),
                    Some(format!("write `steps.{target}.outputs.<name>`")),
                ),
                Some(other) => r.error(
                    "K105",
                    span,
                    format!(
                        "`steps.{target}.{other}` cannot be read: a step only exposes `outputs`"
                    ),
                    Some(format!("write `steps.{target}.outputs.<name>`")),
                ),
            }
        }
        "matrix" => {
            if u.in_axis {
                r.error(
                    "K106",
                    span,
                    format!("a matrix axis of {label} cannot read `matrix`"),
                    Some("an axis is computed before the matrix exists; read `steps` or `env` instead".to_owned()),
                );
                return;
            }
            let axes: Vec<&str> = step
                .step
                .matrix
                .as_ref()
                .map(|m| m.axes.iter().map(|(n, _)| n.value.as_str()).collect())
                .unwrap_or_default();
            let Some(axis) = u.path.get(1) else {
                if step.step.matrix.is_none() {
                    r.error(
                        "K106",
                        span,
                        format!("{label} has no `matrix`"),
                        Some("add a `matrix:` to the step, or remove the reference".to_owned()),
                    );
                }
                return;
            };
            if step.step.matrix.is_none() {
                r.error(
                    "K106",
                    span,
                    format!("{label} has no `matrix`, so `matrix.{axis}` is undefined"),
                    Some(format!("add `matrix: {{ {axis}: [...] }}` to {label}")),
                );
            } else if !axes.contains(&axis.as_str()) {
                let hint = match suggest(axis, axes.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the axes of {label} are {}", list(&axes)),
                };
                r.error(
                    "K106",
                    span,
                    format!("unknown matrix axis `{axis}` in {label}"),
                    Some(hint),
                );
            }
        }
        "secrets" => {
            let Some(name) = u.path.get(1) else {
                r.error(
                    "K107",
                    span,
                    "an expression must name the secret it reads".to_owned(),
                    Some("write `secrets.<NAME>`".to_owned()),
                );
                return;
            };
            if !step.step.secrets.iter().any(|s| s.value == *name) {
                r.error(
                    "K107",
                    span,
                    format!("secret `{name}` is not listed in `secrets` of {label}"),
                    Some(format!(
                        "add `{name}` to `secrets:` of {label}; a step reads only the secrets it lists"
                    )),
                );
            }
        }
        _ => {}
    }
}
