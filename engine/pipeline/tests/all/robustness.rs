//! Whatever the input, parsing returns diagnostics and never panics.

use kiln_pipeline::{parse, render, to_json};

const VALID: &str = r#"name: images
on:
  push: { branches: [main], paths: ["apps/**"] }
  pull_request: {}
env: { REGISTRY: registry.example.com/team, N: 3 }
steps:
  - id: checkout
    uses: clone
    with: { depth: 50, url: &url "https://example.com/repo.git" }
  - id: affected
    uses: nx-affected
    needs: [checkout]
    with: { base: "${{ event.before }}", again: *url }
  - id: image
    uses: build
    needs: [affected]
    matrix: { app: "${{ steps.affected.outputs.projects }}", os: [linux, 'mac os'] }
    if: "${{ matrix.app }}"
    with:
      context: "apps/${{ matrix.app }}"
      script: |
        echo "${{ env.REGISTRY }}"
        echo done
      folded: >-
        one
        two
    secrets: [REGISTRY_AUTH]
    timeout: 20m
    retry: { attempts: 3, backoff: 10s }
    allow: { net: ["deployer.internal:443"], workspace: write }
"#;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

/// Characters that mean something to YAML or to templates, and a few multi-byte ones.
const ALPHABET: &[&str] = &[
    " ", "  ", "\n", "\t", ":", "-", "[", "]", "{", "}", ",", "#", "&", "*", "!", "!!", "|", ">",
    "'", "\"", "?", "%", "@", "`", "$", "${{", "}}", "\\", "~", "a", "id", "steps", "é", "€", "😀",
    "\r\n", "---", "...", "<<", "0", "1.5", "\u{feff}",
];

fn check(text: &str) {
    let (_, diags) = parse("fuzz.yaml", text);
    for d in &diags {
        if let Some(s) = d.span {
            assert!(
                s.start <= s.end && s.end <= text.len(),
                "span {s:?} out of {text:?}"
            );
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            assert!(s.line >= 1 && s.col >= 1, "{s:?}");
        }
    }
    let _ = render(&diags);
    let _ = to_json(&diags);
}

#[test]
fn the_valid_example_has_no_diagnostics() {
    let (p, diags) = parse("valid.yaml", VALID);
    assert!(diags.is_empty(), "{}", render(&diags));
    assert!(p.is_some());
}

#[test]
fn every_truncation_of_a_valid_pipeline_parses_without_panicking() {
    for (i, _) in VALID.char_indices() {
        check(&VALID[..i]);
    }
}

#[test]
fn random_edits_of_a_valid_pipeline_parse_without_panicking() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let chars: Vec<char> = VALID.chars().collect();
    for _ in 0..1500 {
        let mut text: Vec<String> = chars.iter().map(char::to_string).collect();
        for _ in 0..=rng.below(6) {
            let at = rng.below(text.len());
            let piece = ALPHABET[rng.below(ALPHABET.len())].to_owned();
            match rng.below(3) {
                0 => text.insert(at, piece),
                1 => text[at] = piece,
                _ => {
                    text.remove(at);
                }
            }
        }
        check(&text.concat());
    }
}

#[test]
fn random_garbage_parses_without_panicking() {
    let mut rng = Rng(42);
    for _ in 0..1500 {
        let len = rng.below(80);
        let text: String = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        check(&text);
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused_not_fatal() {
    check(&"[".repeat(100_000));
    check(&format!("name: {}{}", "[".repeat(500), "]".repeat(500)));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            p = if i == 0 {
                "a".to_owned()
            } else {
                format!("b{}", i - 1)
            }
        ));
    }
    let (_, diags) = parse("bomb.yaml", &bomb);
    assert!(diags.iter().any(|d| d.code == "K007"), "{}", render(&diags));
}
