//! What a valid pipeline reads as, span by span.

use std::time::Duration;

use kiln_expr::Scope;
use kiln_pipeline::{Axis, Pipeline, PluginRef, Span, parse, render};
use serde_json::json;

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn full_example() -> String {
    format!(
        r#"name: images
on:
  push: {{ branches: [main], paths: ["apps/**", "libs/**"] }}
  pull_request: {{}}
  manual: {{}}
env: {{ REGISTRY: registry.example.com/team, RETRIES: 3, DEBUG: false }}
steps:
  - id: checkout
    uses: clone
    with: {{ depth: 50, submodules: false, ratio: 0.5, ref: ~ }}
  - id: affected
    uses: nx-affected
    needs: checkout
    with: {{ base: "${{{{ event.before }}}}" }}
  - id: image
    uses: build
    needs: [affected]
    matrix:
      app: "${{{{ steps.affected.outputs.projects }}}}"
      arch: [amd64, arm64]
    if: "${{{{ matrix.app }}}}"
    with:
      context: "apps/${{{{ matrix.app }}}}"
      tags:
        - "${{{{ env.REGISTRY }}}}/${{{{ matrix.app }}}}:${{{{ git.sha }}}}"
      push: true
      build-args: {{ A: b }}
    secrets: [REGISTRY_AUTH]
    env:
      AUTH: "${{{{ secrets.REGISTRY_AUTH }}}}"
    timeout: 20m
    retry: {{ attempts: 3, backoff: 10s }}
    continue-on-error: true
  - id: tell-deployer
    uses: oci://registry.example.com/plugins/notify@sha256:{DIGEST}
    needs: [image]
    if: steps.checkout.outputs.sha
    retry: 2
    with: {{ url: "https://deployer.internal/hooks/kiln" }}
    allow: {{ net: ["deployer.internal:443"], workspace: write }}
  - id: local
    uses: ./plugins/custom.wasm
    needs: [checkout]
    timeout: 1h30m
    retry: {{ attempts: 5, backoff: 10m }}
"#
    )
}

fn parse_ok(text: &str) -> Pipeline {
    let (pipeline, diags) = parse("p.yaml", text);
    assert!(diags.is_empty(), "{}", render(&diags));
    match pipeline {
        Some(p) => p,
        None => panic!("no pipeline"),
    }
}

fn slice(text: &str, span: Span) -> &str {
    text.get(span.start..span.end).unwrap_or("<bad span>")
}

fn literal(t: &kiln_expr::Template) -> serde_json::Value {
    t.eval(&Scope::default()).unwrap_or_default()
}

#[test]
fn a_full_featured_pipeline_reads_without_diagnostics_into_the_expected_model() {
    let text = full_example();
    let p = parse_ok(&text);
    assert_eq!(p.name.value, "images");
    assert_eq!((p.name.span.line, p.name.span.col), (1, 7));

    let push = p.on.push.as_ref().map(|f| {
        (
            f.branches
                .iter()
                .map(|b| b.value.as_str())
                .collect::<Vec<_>>(),
            f.paths.iter().map(|b| b.value.as_str()).collect::<Vec<_>>(),
        )
    });
    assert_eq!(push, Some((vec!["main"], vec!["apps/**", "libs/**"])));
    assert!(p.on.pull_request.is_some());
    assert!(p.on.manual);

    let env: Vec<(&str, serde_json::Value)> = p
        .env
        .iter()
        .map(|(k, v)| (k.value.as_str(), literal(&v.value)))
        .collect();
    assert_eq!(
        env,
        vec![
            ("REGISTRY", json!("registry.example.com/team")),
            ("RETRIES", json!("3")),
            ("DEBUG", json!("false"))
        ]
    );

    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.value.as_str()).collect();
    assert_eq!(
        ids,
        ["checkout", "affected", "image", "tell-deployer", "local"]
    );
    let [checkout, affected, image, tell, local] = p.steps.as_slice() else {
        panic!("five steps");
    };

    // checkout: JSON types and a span for every pointer.
    assert_eq!(checkout.uses.value, PluginRef::Builtin("clone".to_owned()));
    assert_eq!(
        checkout.with.value,
        json!({ "depth": 50, "submodules": false, "ratio": 0.5, "ref": null })
    );
    let pointers: Vec<&str> = checkout.with.spans.keys().map(String::as_str).collect();
    assert_eq!(pointers, ["", "/depth", "/ratio", "/ref", "/submodules"]);
    let depth = checkout.with.spans["/depth"];
    assert_eq!(slice(&text, depth), "50");
    assert_eq!((depth.line, depth.col, depth.end_col), (10, 20, 22));
    assert!(slice(&text, checkout.with.spans[""]).starts_with("{ depth: 50"));
    assert!(slice(&text, checkout.span).starts_with("id: checkout"));
    assert!(checkout.timeout.is_none() && checkout.retry.is_none() && checkout.matrix.is_none());
    assert!(!checkout.continue_on_error);
    assert!(checkout.allow.workspace_write.is_none() && checkout.allow.net.is_empty());

    // affected: `needs` as a bare string.
    let needs: Vec<&str> = affected.needs.iter().map(|n| n.value.as_str()).collect();
    assert_eq!(needs, ["checkout"]);
    assert_eq!(
        affected.with.value,
        json!({ "base": "${{ event.before }}" })
    );

    // image: matrix, nested `with` pointers, secrets, timeout, retry defaults.
    let matrix = image.matrix.as_ref().map(|m| {
        m.axes
            .iter()
            .map(|(name, axis)| match &axis.value {
                Axis::Values(v) => (name.value.as_str(), json!(v)),
                Axis::Dynamic(_) => (name.value.as_str(), json!("dynamic")),
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        matrix,
        Some(vec![
            ("app", json!("dynamic")),
            ("arch", json!(["amd64", "arm64"]))
        ])
    );
    assert_eq!(
        slice(&text, image.with.spans["/tags/0"]),
        "\"${{ env.REGISTRY }}/${{ matrix.app }}:${{ git.sha }}\""
    );
    assert_eq!(slice(&text, image.with.spans["/build-args/A"]), "b");
    assert_eq!(image.with.value["push"], json!(true));
    assert!(image.condition.is_some());
    assert_eq!(
        image.secrets.first().map(|s| s.value.as_str()),
        Some("REGISTRY_AUTH")
    );
    assert_eq!(
        image.timeout.as_ref().map(|t| t.value),
        Some(Duration::from_secs(20 * 60))
    );
    let retry = image.retry.as_ref().map(|r| r.value);
    assert_eq!(
        retry.map(|r| (r.attempts, r.backoff, r.max_backoff)),
        Some((3, Duration::from_secs(10), Duration::from_secs(300)))
    );
    assert!(image.continue_on_error);
    assert_eq!(image.env.len(), 1);

    // tell-deployer: pinned OCI, short retry with defaults, grants.
    assert_eq!(
        tell.uses.value,
        PluginRef::Oci(format!(
            "oci://registry.example.com/plugins/notify@sha256:{DIGEST}"
        ))
    );
    let retry = tell.retry.as_ref().map(|r| r.value);
    assert_eq!(
        retry.map(|r| (r.attempts, r.backoff, r.max_backoff)),
        Some((2, Duration::from_secs(1), Duration::from_secs(300)))
    );
    assert!(tell.allow.workspace_write.is_some());
    let net: Vec<&str> = tell.allow.net.iter().map(|n| n.value.as_str()).collect();
    assert_eq!(net, ["deployer.internal:443"]);

    // local: a path, and a max-backoff raised to the backoff.
    assert_eq!(
        local.uses.value,
        PluginRef::Path("./plugins/custom.wasm".to_owned())
    );
    assert_eq!(
        local.timeout.as_ref().map(|t| t.value),
        Some(Duration::from_secs(5400))
    );
    let retry = local.retry.as_ref().map(|r| r.value);
    assert_eq!(
        retry.map(|r| (r.backoff, r.max_backoff)),
        Some((Duration::from_secs(600), Duration::from_secs(600)))
    );
    assert_eq!(local.with.value, json!({}));
    assert!(local.with.spans.is_empty());
}

#[test]
fn a_pipeline_without_on_runs_only_manually() {
    let p = parse_ok("name: x\nsteps: [{ id: a, uses: echo }]\n");
    assert!(p.on.manual && p.on.push.is_none() && p.on.pull_request.is_none());
}

#[test]
fn on_accepts_an_event_name_or_a_list_of_them() {
    let p = parse_ok("name: x\non: push\nsteps: [{ id: a, uses: echo }]\n");
    assert!(p.on.push.is_some() && !p.on.manual);
    let p = parse_ok("name: x\non: [push, pull_request]\nsteps: [{ id: a, uses: echo }]\n");
    assert!(p.on.push.is_some() && p.on.pull_request.is_some() && !p.on.manual);
    let p = parse_ok("name: x\non: { pull_request: }\nsteps: [{ id: a, uses: echo }]\n");
    assert!(p.on.pull_request.is_some() && !p.on.manual);
}

#[test]
fn a_filter_list_may_be_a_single_string() {
    let p = parse_ok("name: x\non: { push: { branches: main } }\nsteps: [{ id: a, uses: echo }]\n");
    let branches: Vec<String> =
        p.on.push
            .map(|f| f.branches.into_iter().map(|b| b.value).collect())
            .unwrap_or_default();
    assert_eq!(branches, ["main"]);
}

#[test]
fn an_alias_stands_for_a_copy_of_the_anchored_value() {
    let text = "name: x\nsteps:\n  - id: a\n    uses: echo\n    with: &common { region: eu }\n  - id: b\n    uses: echo\n    with: *common\n";
    let p = parse_ok(text);
    let values: Vec<&serde_json::Value> = p.steps.iter().map(|s| &s.with.value).collect();
    assert_eq!(
        values,
        [&json!({ "region": "eu" }), &json!({ "region": "eu" })]
    );
    // The copy points at the alias as a whole and at the anchored text inside.
    let b = &p.steps[1].with.spans;
    assert_eq!(slice(text, b[""]), "*common");
    assert_eq!(slice(text, b["/region"]), "eu");
}

#[test]
fn a_duplicate_key_is_reported_and_the_first_value_kept() {
    let (p, diags) = parse(
        "p.yaml",
        "name: x\nsteps: [{ id: a, uses: echo, with: { k: 1, k: 2 } }]\n",
    );
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["K006"]);
    assert_eq!(
        p.map(|p| p.steps[0].with.value.clone()),
        Some(json!({ "k": 1 }))
    );
}

#[test]
fn if_accepts_a_boolean_literal() {
    let p = parse_ok("name: x\nsteps: [{ id: a, uses: echo, if: false }]\n");
    assert!(p.steps[0].condition.is_some());
}

#[test]
fn a_transitive_need_may_be_read_by_an_expression() {
    parse_ok(
        "name: x\nsteps:\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, needs: a }\n  - { id: c, uses: echo, needs: b, with: { m: '${{steps.a.outputs.m}}' } }\n",
    );
}

#[test]
fn the_pipeline_env_may_read_env_event_git_and_run() {
    parse_ok(
        "name: x\nenv: { A: '${{env.B}}', C: '${{event.ref}}', D: '${{git.sha}}', E: '${{run.id}}' }\nsteps: [{ id: a, uses: echo }]\n",
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "name: \"héé\"\nsteps: [{ id: a, uses: echo, with: { m: \"ü€\" }, neds: [b] }]\n";
    let (_, diags) = parse("p.yaml", text);
    let span = diags.first().and_then(|d| d.span);
    let line2 = "steps: [{ id: a, uses: echo, with: { m: \"ü€\" }, neds: [b] }]";
    let col = line2.find("neds").map(|b| line2[..b].chars().count() + 1);
    assert_eq!(
        span.map(|s| (s.line, s.col as usize)),
        Some((2, col.unwrap_or(0)))
    );
    assert_eq!(span.map(|s| slice(text, s)), Some("neds"));
}

#[test]
fn a_template_error_points_inside_a_single_quoted_string() {
    let text = "name: x\nsteps: [{ id: a, uses: echo, with: { m: 'it''s ${{ x' } }]\n";
    let (_, diags) = parse("p.yaml", text);
    let d = diags.first();
    assert_eq!(d.map(|d| d.code), Some("K104"));
    assert_eq!(d.and_then(|d| d.span).map(|s| slice(text, s)), Some("$"));
}

#[test]
fn a_template_error_inside_a_block_scalar_points_at_its_line() {
    let text = "name: x\nsteps:\n  - id: a\n    uses: echo\n    with:\n      script: |\n        echo one\n        echo ${{ oops\n";
    let (_, diags) = parse("p.yaml", text);
    let span = diags.first().and_then(|d| d.span);
    assert_eq!(span.map(|s| (s.line, s.col)), Some((8, 14)));
}

#[test]
fn diagnostics_as_json_carry_positions_and_hints() {
    let (_, diags) = parse(
        "p.yaml",
        "name: x\nsteps: [{ id: a, uses: echo, neds: [] }]\n",
    );
    let json = kiln_pipeline::to_json(&diags);
    assert_eq!(json[0]["code"], "K003");
    assert_eq!(json[0]["line"], 2);
    assert_eq!(json[0]["col"], 30);
    assert_eq!(json[0]["end_col"], 34);
    assert_eq!(json[0]["hint"], "did you mean `needs`?");
}

#[test]
fn a_pipeline_with_errors_is_still_returned_without_the_unusable_steps() {
    let (p, diags) = parse(
        "p.yaml",
        "name: x\nsteps:\n  - { id: a, uses: echo }\n  - { id: b }\n",
    );
    assert!(kiln_pipeline::has_errors(&diags));
    let ids: Vec<String> = p
        .map(|p| p.steps.into_iter().map(|s| s.id.value).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["a"]);
}

#[test]
fn cache_settings_read_as_modes_with_their_globs() {
    use kiln_pipeline::CacheMode;
    let text = "name: c\nsteps:\n  - id: auto\n    uses: echo\n  - id: off\n    uses: echo\n    cache: false\n  - id: on\n    uses: echo\n    cache: true\n  - id: shaped\n    uses: echo\n    cache:\n      inputs: [\"src/**\", \"!src/**/*.log\"]\n      outputs: dist\n";
    let (pipeline, diags) = parse("c.yaml", text);
    assert!(diags.is_empty(), "{}", render(&diags));
    let p = pipeline.expect("parsed");
    let mode = |id: &str| p.step(id).map(|s| s.cache.mode);
    assert_eq!(mode("auto"), Some(CacheMode::Auto));
    assert_eq!(mode("off"), Some(CacheMode::Off));
    assert_eq!(mode("on"), Some(CacheMode::On));
    let shaped = &p.step("shaped").expect("step").cache;
    assert_eq!(shaped.mode, CacheMode::On);
    let globs = |g: &[kiln_pipeline::Spanned<String>]| {
        g.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        globs(shaped.inputs.as_deref().unwrap_or_default()),
        ["src/**", "!src/**/*.log"]
    );
    assert_eq!(globs(&shaped.outputs), ["dist"]);
    assert_eq!(shaped.outputs[0].span.line, 15);
    assert!(p.step("auto").expect("step").cache.inputs.is_none());
}
