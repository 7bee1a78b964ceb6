//! The key of one step instance. The order and encoding of the parts is the key's version: any
//! change must change [`DOMAIN`] (the golden-key test below makes that impossible to forget).

use kiln_cache::files::{DigestMemo, FileKind, Patterns, walk};
use kiln_cache::key::{Key, KeyBuilder};
use serde_json::Value;

use super::UnitFacts;

/// Names the key schema; bump its version when a part changes.
pub const DOMAIN: &str = "kiln-step-v1";

/// The key of the unit `facts` describes; reads and hashes its input files.
pub fn step_key(facts: &UnitFacts, memo: &DigestMemo) -> Result<Key, String> {
    let mask = |v: &Value| facts.masker.mask_json(v);
    let mut k = KeyBuilder::new(DOMAIN);
    k.part("plugin", |p| {
        p.str(&facts.plugin.digest);
    });
    k.part("config", |p| {
        p.json(&mask(&facts.config));
    });
    k.part("env", |p| {
        let mut env: Vec<(String, String)> = facts
            .env
            .iter()
            .map(|(n, v)| (n.clone(), facts.masker.mask(v)))
            .collect();
        env.sort();
        p.list(&env, |p, (n, v)| {
            p.str(n).str(v);
        });
    });
    k.part("secrets", |p| {
        let mut names: Vec<&str> = facts
            .step
            .secrets
            .iter()
            .map(|s| s.value.as_str())
            .collect();
        names.sort();
        names.dedup();
        p.list(&names, |p, n| {
            p.str(n);
        });
    });
    k.part("upstream", |p| {
        p.json(&mask(&facts.upstream));
    });
    k.part("matrix", |p| {
        let values = facts.matrix.clone().unwrap_or_default();
        p.list(&values, |p, (axis, v)| {
            p.str(axis).json(v);
        });
    });
    k.part("event", |p| {
        p.json(&facts.event);
    });
    k.part("grants", |p| {
        let mut net: Vec<&str> = facts
            .step
            .allow
            .net
            .iter()
            .map(|n| n.value.as_str())
            .collect();
        net.sort();
        p.bool(facts.step.allow.workspace_write.is_some())
            .list(&net, |p, n| {
                p.str(n);
            });
    });
    let outputs: Vec<String> = facts
        .step
        .cache
        .outputs
        .iter()
        .map(|o| o.value.clone())
        .collect();
    k.part("outputs", |p| {
        p.list(&outputs, |p, o| {
            p.str(o);
        });
    });
    let inputs: Option<Vec<String>> = facts
        .step
        .cache
        .inputs
        .as_ref()
        .map(|i| i.iter().map(|s| s.value.clone()).collect());
    let patterns = match &inputs {
        Some(i) => Some(Patterns::new(i).map_err(|e| e.to_string())?),
        None => None,
    };
    let excluded = if outputs.is_empty() {
        None
    } else {
        Some(Patterns::new(&outputs).map_err(|e| e.to_string())?)
    };
    let compile = |p: &[String]| {
        if p.is_empty() {
            Ok(None)
        } else {
            Patterns::new(p).map(Some).map_err(|e| e.to_string())
        }
    };
    let (foreign, ancestors) = if inputs.is_none() {
        (
            compile(&facts.foreign_outputs)?,
            compile(&facts.ancestor_outputs)?,
        )
    } else {
        (None, None)
    };
    let files = walk(&facts.workspace, patterns.as_ref())
        .map_err(|e| format!("cannot list the workspace: {e}"))?;
    let mut hashed = Vec::with_capacity(files.len());
    for f in files {
        if excluded.as_ref().is_some_and(|x| x.is_match(&f.rel)) {
            continue;
        }
        if foreign.as_ref().is_some_and(|x| x.is_match(&f.rel))
            && !ancestors.as_ref().is_some_and(|x| x.is_match(&f.rel))
        {
            continue;
        }
        let entry = match &f.kind {
            FileKind::File { executable, .. } => {
                let d = memo
                    .digest(&facts.workspace.join(&f.rel))
                    .map_err(|e| format!("cannot read `{}`: {e}", f.rel))?;
                (f.rel, b'f', *executable, d.to_string())
            }
            FileKind::Symlink { target } => (f.rel, b'l', false, target.clone()),
        };
        hashed.push(entry);
    }
    k.part("inputs", |p| {
        match &inputs {
            Some(i) => p.list(i, |p, s| {
                p.str(s);
            }),
            None => p.str("<workspace>"),
        };
        p.list(&hashed, |p, (rel, kind, exec, content)| {
            p.str(rel).bytes(&[*kind]).bool(*exec).str(content);
        });
    });
    Ok(k.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kiln_host::{Caching, PluginInfo};
    use serde_json::json;

    use super::*;
    use crate::mask::Masker;
    use crate::plan::PlanPlugin;

    fn facts(yaml_step: &str, workspace: &std::path::Path) -> UnitFacts {
        let text = format!("name: k\nsteps:\n{yaml_step}");
        let (pipeline, diags) = kiln_pipeline::parse("k.yaml", &text);
        assert!(diags.is_empty(), "{}", kiln_pipeline::render(&diags));
        let step = pipeline.map(|p| p.steps[0].clone()).expect("a step");
        UnitFacts {
            step,
            plugin: PlanPlugin {
                origin: "echo".into(),
                digest: format!("sha256:{}", "ab".repeat(32)),
                info: PluginInfo {
                    name: "echo".into(),
                    version: "1".into(),
                    description: String::new(),
                    config_schema: json!({}),
                    outputs: vec![],
                    capabilities: vec![],
                    caching: Caching::Auto,
                },
            },
            config: json!({ "message": "hello", "n": 2 }),
            env: vec![("B".into(), "2".into()), ("A".into(), "s3cret".into())],
            upstream: json!({ "up": { "outputs": { "x": "1" } } }),
            matrix: Some(vec![("os".into(), json!("linux"))]),
            event: json!({ "kind": "manual" }),
            workspace: workspace.to_path_buf(),
            masker: Arc::new(Masker::new(["s3cret"])),
            ancestor_outputs: vec![],
            foreign_outputs: vec![],
        }
    }

    fn workspace() -> tempfile::TempDir {
        let ws = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(ws.path().join("src")).expect("mkdir");
        std::fs::write(ws.path().join("src/main.rs"), "fn main() {}\n").expect("write");
        std::fs::write(ws.path().join("README"), "read me\n").expect("write");
        ws
    }

    const STEP: &str = "  - id: s\n    uses: echo\n    secrets: [TOKEN]\n";

    /// A change here means every user's cache is invalidated by an upgrade: bump `DOMAIN`
    /// when it is intended.
    #[test]
    fn the_key_of_a_fixed_step_is_the_golden_key() {
        let ws = workspace();
        let key = step_key(&facts(STEP, ws.path()), &DigestMemo::new()).expect("key");
        assert_eq!(
            key.digest.to_string(),
            "sha256:bc2c84811efcd9cc059997d14454350d8b097e83e7ea8098c939df6f1cfc8a5f"
        );
        let names: Vec<&str> = key.parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "plugin", "config", "env", "secrets", "upstream", "matrix", "event", "grants",
                "outputs", "inputs"
            ]
        );
    }

    #[test]
    fn the_key_is_the_same_in_another_workspace_with_the_same_files() {
        let (a, b) = (workspace(), workspace());
        let ka = step_key(&facts(STEP, a.path()), &DigestMemo::new()).expect("key");
        let kb = step_key(&facts(STEP, b.path()), &DigestMemo::new()).expect("key");
        assert_eq!(ka, kb);
    }

    #[test]
    fn each_input_changes_its_own_part_of_the_key() {
        let ws = workspace();
        let memo = DigestMemo::new();
        let base = step_key(&facts(STEP, ws.path()), &memo).expect("key");
        let changed = |f: &dyn Fn(&mut UnitFacts)| {
            let mut x = facts(STEP, ws.path());
            f(&mut x);
            let k = step_key(&x, &memo).expect("key");
            assert_ne!(k.digest, base.digest);
            k.parts
                .iter()
                .zip(&base.parts)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a.0.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            changed(&|f| f.config = json!({ "message": "bye", "n": 2 })),
            ["config"]
        );
        assert_eq!(
            changed(&|f| f.plugin.digest = "sha256:x".into()),
            ["plugin"]
        );
        assert_eq!(changed(&|f| f.env.push(("C".into(), "3".into()))), ["env"]);
        assert_eq!(changed(&|f| f.upstream = json!({})), ["upstream"]);
        assert_eq!(changed(&|f| f.event = json!({ "kind": "push" })), ["event"]);
        assert_eq!(changed(&|f| f.matrix = None), ["matrix"]);
        std::fs::write(ws.path().join("src/main.rs"), "fn main() { 1; }\n").expect("write");
        assert_eq!(changed(&|_| {}), ["inputs"]);
    }

    #[test]
    fn secret_values_never_reach_the_key_but_their_names_do() {
        let ws = workspace();
        let memo = DigestMemo::new();
        let a = step_key(&facts(STEP, ws.path()), &memo).expect("key");
        let mut other = facts(STEP, ws.path());
        other.env = vec![("B".into(), "2".into()), ("A".into(), "rotated".into())];
        other.masker = Arc::new(Masker::new(["rotated"]));
        assert_eq!(step_key(&other, &memo).expect("key"), a);
    }

    #[test]
    fn declared_inputs_limit_the_files_and_outputs_are_left_out() {
        let ws = workspace();
        let memo = DigestMemo::new();
        let step = "  - id: s\n    uses: echo\n    cache: { inputs: [src], outputs: [dist] }\n";
        let key = |step: &str| step_key(&facts(step, ws.path()), &memo).expect("key");
        let base = key(step);
        std::fs::write(ws.path().join("README"), "changed\n").expect("write");
        assert_eq!(key(step), base, "README is not an input");
        std::fs::write(ws.path().join("src/new.rs"), "").expect("write");
        assert_ne!(key(step).digest, base.digest, "a new file under `src` is");
        let step2 = "  - id: s\n    uses: echo\n    cache: { outputs: [out] }\n";
        let before = step_key(&facts(step2, ws.path()), &memo).expect("key");
        std::fs::create_dir_all(ws.path().join("out")).expect("mkdir");
        std::fs::write(ws.path().join("out/artifact"), "built").expect("write");
        let after = step_key(&facts(step2, ws.path()), &memo).expect("key");
        assert_eq!(before, after, "the step's own outputs are not its inputs");
        let mut f = facts(STEP, ws.path());
        let with_branch = step_key(&f, &memo).expect("key");
        f.foreign_outputs = vec!["out/**".into()];
        let without = step_key(&f, &memo).expect("key");
        assert_ne!(
            with_branch, without,
            "another branch's outputs are left out"
        );
        f.ancestor_outputs = vec!["out/artifact".into()];
        assert_eq!(
            step_key(&f, &memo).expect("key"),
            with_branch,
            "unless a need declares them"
        );
    }
}
