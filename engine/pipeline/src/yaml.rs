//! A YAML document as a tree of nodes with byte spans, built from saphyr's parser events.
//!
//! Why not `saphyr::MarkedYaml`: its loader stops at the first duplicate mapping key (or, when
//! told to allow them, silently keeps the last one), and it expands aliases without telling us.
//! Kiln wants every problem of a file at once, so this module builds its own small tree from
//! the same parser's events (same scanner, same positions) and resolves scalars with saphyr's
//! YAML 1.2 core schema ([`saphyr::Scalar`]). On the way it reports, without stopping:
//!
//! - duplicate keys in any mapping (the first occurrence wins, the later ones are dropped);
//! - a second YAML document in the file (ignored);
//! - tags other than the core schema's `!!str`, `!!int`, ... (the tag is ignored);
//! - merge keys (`<<: *base`), which YAML 1.2 does not have (the entry is dropped).
//!
//! Anchors and aliases are **resolved**: an alias stands for a copy of the anchored node. The
//! copy keeps the positions of the anchored text, so a problem inside it points where it is
//! written, while a problem with the value as a whole (say, its type) points at the alias.
//! Expansion is capped ([`ALIAS_BUDGET`] nodes in all) against "billion laughs" documents, and
//! nesting is capped at [`MAX_DEPTH`] levels so walking the tree can never exhaust the stack.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr::{Scalar as YamlScalar, ScalarStyle};
use saphyr_parser::{Event, Parser, Span as YamlSpan, SpannedEventReceiver, Tag};

use crate::diag::Span;

/// Deepest nesting of sequences and mappings accepted.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most nodes that alias expansion may create in one file.
pub(crate) const ALIAS_BUDGET: usize = 10_000;

/// Positions in one source text: char index (what the YAML scanner counts) to byte offset, and
/// byte offset to 1-based line and column (in characters).
#[derive(Debug)]
pub(crate) struct Source<'t> {
    pub(crate) text: &'t str,
    /// Byte offset of each char index, plus one entry for the end of the text.
    char_bytes: Vec<usize>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut char_bytes: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        char_bytes.push(text.len());
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            text,
            char_bytes,
            line_starts,
        }
    }

    /// Byte offset of a char index (clamped to the end of the text).
    pub(crate) fn byte_of_char(&self, index: usize) -> usize {
        self.char_bytes
            .get(index)
            .copied()
            .unwrap_or(self.text.len())
    }

    /// 1-based line and column (in characters) of a byte offset. A byte order mark takes no
    /// column.
    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let before = self.text.get(start..offset).unwrap_or("");
        let col = before.chars().filter(|&c| c != '\u{feff}').count() + 1;
        (to_u32(line), to_u32(col))
    }

    /// The diagnostic span of a byte range.
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let end = end.max(start);
        let (line, col) = self.line_col(start);
        let (end_line, end_col) = self.line_col(end);
        Span {
            line,
            col,
            end_line,
            end_col,
            start,
            end,
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A node and where it was written (byte offsets in the source).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Number of nodes in this subtree (for the alias budget).
    size: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order, without duplicate keys.
    Map(Vec<(Node, Node)>),
}

/// A scalar: its value under the core schema and the text it stands for.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub(crate) value: ScalarValue,
    /// The string as the scalar reads (after unquoting and folding): `"a\tb"` gives a tab.
    pub(crate) text: String,
    pub(crate) style: ScalarStyle,
    pub(crate) tagged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ScalarValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

impl Node {
    /// What the node is, for "expected ..., found ..." messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar(s) => match s.value {
                ScalarValue::Null => "nothing (null)",
                ScalarValue::Bool(_) => "a boolean",
                ScalarValue::Int(_) => "an integer",
                ScalarValue::Float(_) => "a number",
                ScalarValue::Str => "a string",
            },
        }
    }

    pub(crate) fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a string scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) if s.value == ScalarValue::Str => Some(&s.text),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.value == ScalarValue::Null)
    }
}

/// A problem found while building the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeProblem {
    pub(crate) code: &'static str,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// What reading the YAML produced.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// No document at all (empty file, or only comments).
    Empty,
    /// A syntax error (or a limit): nothing else is worth reporting.
    Fatal(TreeProblem),
    /// The first document, and the problems found on the way.
    Doc(Node, Vec<TreeProblem>),
}

/// Parse `source` into a tree.
pub(crate) fn load(source: &Source<'_>) -> Loaded {
    let mut builder = Builder {
        source,
        stack: Vec::new(),
        anchors: HashMap::new(),
        documents: 0,
        root: None,
        problems: Vec::new(),
        alias_budget: ALIAS_BUDGET,
        fatal: None,
        done: false,
    };
    let mut parser = Parser::new_from_str(source.text);
    if let Err(e) = parser.load(&mut builder, true) {
        let mut at = source.byte_of_char(e.marker().index());
        let mut end = at;
        let info = e.info();
        let hint = if info.contains("tab") {
            // The scanner may report where the token began; point at the tab itself.
            if let Some(tab) = source.text.get(at..).and_then(|rest| rest.find('\t')) {
                at += tab;
                end = at + 1;
            }
            Some("indent with spaces: YAML does not allow tabs in indentation".to_owned())
        } else {
            None
        };
        return Loaded::Fatal(TreeProblem {
            code: "K001",
            start: at,
            end,
            message: format!("invalid YAML: {info}"),
            hint,
        });
    }
    if let Some(fatal) = builder.fatal {
        return Loaded::Fatal(fatal);
    }
    match builder.root {
        None => Loaded::Empty,
        Some(root) => Loaded::Doc(root, builder.problems),
    }
}

struct Frame {
    start: usize,
    anchor: usize,
    /// Flow collections (`[...]`, `{...}`) end at their closing bracket; block ones at their
    /// last child.
    flow_end: Option<usize>,
    body: Body,
}

enum Body {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// First occurrence of each scalar key.
        seen: HashMap<String, usize>,
    },
}

struct Builder<'s, 't> {
    source: &'s Source<'t>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    root: Option<Node>,
    problems: Vec<TreeProblem>,
    alias_budget: usize,
    fatal: Option<TreeProblem>,
    /// Set after the first document, or after a fatal problem: later events are ignored.
    done: bool,
}

impl Builder<'_, '_> {
    fn bytes(&self, span: YamlSpan) -> (usize, usize) {
        let start = self.source.byte_of_char(span.start.index());
        let end = self.source.byte_of_char(span.end.index());
        (start, end.max(start))
    }

    fn problem(&mut self, code: &'static str, start: usize, end: usize, message: String) {
        self.problems.push(TreeProblem {
            code,
            start,
            end,
            message,
            hint: None,
        });
    }

    fn stop(&mut self, problem: TreeProblem) {
        self.fatal = Some(problem);
        self.done = true;
    }

    fn check_tag(&mut self, tag: Option<&Cow<'_, Tag>>, start: usize, end: usize) -> bool {
        let Some(tag) = tag else { return false };
        if !tag.is_yaml_core_schema() {
            self.problem("K007", start, end, format!("unsupported YAML tag `{tag}`"));
            if let Some(p) = self.problems.last_mut() {
                p.hint = Some("remove the tag; Kiln reads plain YAML values".to_owned());
            }
        }
        true
    }

    fn open(&mut self, span: YamlSpan, anchor: usize, tag: Option<&Cow<'_, Tag>>, body: Body) {
        let (start, end) = self.bytes(span);
        if self.stack.len() >= MAX_DEPTH {
            self.stop(TreeProblem {
                code: "K007",
                start,
                end,
                message: format!("YAML nested deeper than {MAX_DEPTH} levels"),
                hint: Some(
                    "a pipeline never needs this much nesting; flatten the value".to_owned(),
                ),
            });
            return;
        }
        self.check_tag(tag, start, end);
        self.stack.push(Frame {
            start,
            anchor,
            flow_end: None,
            body,
        });
    }

    fn close(&mut self, span: YamlSpan) {
        let (start, end) = self.bytes(span);
        let Some(mut frame) = self.stack.pop() else {
            return;
        };
        if end > start {
            frame.flow_end = Some(end);
        }
        let is_seq = matches!(frame.body, Body::Seq(_));
        let (kind, first, last, size) = match frame.body {
            Body::Seq(items) => {
                let first = items.first().map(|n| n.start);
                let last = items.last().map(|n| n.end);
                let size = 1 + items.iter().map(|n| n.size).sum::<usize>();
                (Kind::Seq(items), first, last, size)
            }
            Body::Map { entries, .. } => {
                let first = entries.first().map(|(k, _)| k.start);
                let last = entries.last().map(|(k, v)| v.end.max(k.end));
                let size = 1 + entries.iter().map(|(k, v)| k.size + v.size).sum::<usize>();
                (Kind::Map(entries), first, last, size)
            }
        };
        let (node_start, node_end) = match frame.flow_end {
            Some(e) => (frame.start, e),
            // A block sequence starts at its first `-`, a block mapping at its first key (not
            // at an anchor before it); both end with their last child (not at the next token).
            None => (
                if is_seq {
                    frame.start
                } else {
                    first.unwrap_or(frame.start)
                },
                last.unwrap_or(frame.start)
                    .max(first.unwrap_or(frame.start)),
            ),
        };
        let node = Node {
            kind,
            start: node_start,
            end: node_end,
            size,
        };
        self.insert(node, frame.anchor);
    }

    fn scalar(
        &mut self,
        span: YamlSpan,
        text: Cow<'_, str>,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<Cow<'_, Tag>>,
    ) {
        let (start, end) = self.bytes(span);
        let tagged = self.check_tag(tag.as_ref(), start, end);
        let owned = text.into_owned();
        let value = match YamlScalar::parse_from_cow_and_metadata(
            Cow::Borrowed(owned.as_str()),
            style,
            tag.as_ref(),
        ) {
            Some(YamlScalar::Null) => ScalarValue::Null,
            Some(YamlScalar::Boolean(b)) => ScalarValue::Bool(b),
            Some(YamlScalar::Integer(i)) => ScalarValue::Int(i),
            Some(YamlScalar::FloatingPoint(f)) => ScalarValue::Float(f.into_inner()),
            Some(YamlScalar::String(_)) => ScalarValue::Str,
            None => {
                let tag = tag.map(|t| t.to_string()).unwrap_or_default();
                self.problem(
                    "K005",
                    start,
                    end,
                    format!("`{owned}` is not a valid `{tag}` value"),
                );
                ScalarValue::Str
            }
        };
        let node = Node {
            kind: Kind::Scalar(Scalar {
                value,
                text: owned,
                style,
                tagged,
            }),
            start,
            end,
            size: 1,
        };
        self.insert(node, anchor);
    }

    fn alias(&mut self, span: YamlSpan, id: usize) {
        let (start, end) = self.bytes(span);
        let Some(anchored) = self.anchors.get(&id) else {
            // The parser rejects unknown anchors before we get here.
            return;
        };
        if anchored.size > self.alias_budget {
            self.stop(TreeProblem {
                code: "K007",
                start,
                end,
                message: format!("aliases expand to more than {ALIAS_BUDGET} YAML nodes"),
                hint: Some("write the values out instead of nesting aliases".to_owned()),
            });
            return;
        }
        self.alias_budget -= anchored.size;
        let mut node = anchored.clone();
        node.start = start;
        node.end = end;
        self.insert(node, 0);
    }

    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.body {
            Body::Seq(items) => items.push(node),
            Body::Map { entries, key, seen } => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let mut problem = None;
                    if let Some(s) = k.scalar() {
                        if s.text == "<<" && !s.tagged && s.style == ScalarStyle::Plain {
                            problem = Some(TreeProblem {
                                code: "K007",
                                start: k.start,
                                end: k.end,
                                message: "merge keys (`<<`) are not supported".to_owned(),
                                hint: Some(
                                    "write the keys out, or alias a whole value (`env: *common`)"
                                        .to_owned(),
                                ),
                            });
                        } else if let Some(&first) = seen.get(&s.text) {
                            let (line, _) = self.source.line_col(first);
                            problem = Some(TreeProblem {
                                code: "K006",
                                start: k.start,
                                end: k.end,
                                message: format!("duplicate key `{}`", s.text),
                                hint: Some(format!(
                                    "`{}` is already set on line {line}; remove one of them",
                                    s.text
                                )),
                            });
                        } else {
                            seen.insert(s.text.clone(), k.start);
                        }
                    }
                    match problem {
                        Some(p) => self.problems.push(p),
                        None => entries.push((k, node)),
                    }
                }
            },
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder<'_, '_> {
    fn on_event(&mut self, ev: Event<'input>, span: YamlSpan) {
        if self.done {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    let (start, end) = self.bytes(span);
                    self.problem(
                        "K007",
                        start,
                        end,
                        "a pipeline file holds one YAML document".to_owned(),
                    );
                    if let Some(p) = self.problems.last_mut() {
                        p.hint = Some(
                            "put each pipeline in its own file; everything after this `---` is ignored"
                                .to_owned(),
                        );
                    }
                    self.done = true;
                }
            }
            Event::Scalar(text, style, anchor, tag) => self.scalar(span, text, style, anchor, tag),
            Event::SequenceStart(anchor, tag) => {
                self.open(span, anchor, tag.as_ref(), Body::Seq(Vec::new()));
            }
            Event::MappingStart(anchor, tag) => self.open(
                span,
                anchor,
                tag.as_ref(),
                Body::Map {
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                },
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
            Event::Alias(id) => self.alias(span, id),
        }
    }
}

/// Maps byte offsets in a scalar's value to byte offsets in the source, so that an error at
/// offset 12 of `"apps/${{ matrix.app }"` points at the right column even though the source
/// has quotes, escapes, folded lines or block indentation around the value.
///
/// Each character of the value is matched with the next equal character of the source text;
/// characters in between (quotes, indentation, escape backslashes) are skipped. When a value
/// character cannot be found (an escape such as `\t`), the mapping stops and offsets past
/// that point map to `None`: the caller then points at the whole scalar.
#[derive(Debug)]
pub(crate) struct OffsetMap {
    /// (value byte offset, source byte offset, source char length) for each mapped char.
    points: Vec<(usize, usize, usize)>,
    value_len: usize,
}

impl OffsetMap {
    pub(crate) fn new(source: &Source<'_>, node: &Node, scalar: &Scalar) -> Self {
        let raw_start = node.start.min(source.text.len());
        let raw = source.text.get(raw_start..node.end).unwrap_or("");
        // Skip a tag (`!!str `) and the opening quote.
        let mut skip = 0;
        if scalar.tagged {
            skip = raw.find(char::is_whitespace).unwrap_or(0);
        }
        if matches!(
            scalar.style,
            ScalarStyle::DoubleQuoted | ScalarStyle::SingleQuoted
        ) {
            let quote = if scalar.style == ScalarStyle::DoubleQuoted {
                '"'
            } else {
                '\''
            };
            if let Some(q) = raw.get(skip..).and_then(|r| r.find(quote)) {
                skip += q + 1;
            }
        }
        let mut points = Vec::with_capacity(scalar.text.len());
        let mut rest = raw.get(skip..).unwrap_or("").char_indices().peekable();
        'value: for (vi, vc) in scalar.text.char_indices() {
            for (ri, rc) in rest.by_ref() {
                if rc == vc {
                    points.push((vi, raw_start + skip + ri, rc.len_utf8()));
                    continue 'value;
                }
            }
            break;
        }
        OffsetMap {
            points,
            value_len: scalar.text.len(),
        }
    }

    /// The source range of the value's byte range `start..end`, if it could be mapped.
    pub(crate) fn range(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let last = self.points.last()?;
        // Value bytes up to here have a place in the source.
        let mapped_until = last.0 + last.2;
        if start >= self.value_len {
            // Just past the end of the value (e.g. "unclosed `${{`" at the very end).
            return (mapped_until == self.value_len).then_some((last.1 + last.2, last.1 + last.2));
        }
        let end = end.min(self.value_len);
        if end > mapped_until {
            return None;
        }
        let first = self
            .points
            .get(self.points.binary_search_by_key(&start, |p| p.0).ok()?)?;
        if end <= start {
            return Some((first.1, first.1));
        }
        let idx = self.points.partition_point(|p| p.0 < end);
        let last = self.points.get(idx.checked_sub(1)?)?;
        Some((first.1, (last.1 + last.2).max(first.1)))
    }
}
