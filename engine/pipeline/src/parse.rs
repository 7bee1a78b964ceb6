//! YAML text -> Pipeline, collecting every diagnostic.
//!
//! Three passes: [`crate::yaml`] builds a span-carrying tree (syntax, duplicate keys), the
//! [`Reader`] here walks it by hand into the model (keys, types, values, expression syntax),
//! and [`crate::check`] looks at the steps together (ids, `needs`, cycles, references).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_expr::{Expr, Template};

use crate::check;
use crate::diag::{Diagnostic, Severity, SourceFile, Span};
use crate::keys::{self, list, suggest};
use crate::model::{
    Allow, Axis, CacheMode, Concurrency, Config, EventFilter, Matrix, Pipeline, PluginRef, Retry,
    Schedule, Spanned, Step, StepCache, Triggers,
};
use crate::yaml::{self, Kind, Loaded, Node, OffsetMap, ScalarValue, Source, TreeProblem};

/// `retry:` backoff when not given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// `retry:` max-backoff when not given (or the backoff, if that is longer).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Parse and check one pipeline file. Returns the pipeline when it could be read far enough to
/// be useful (even with errors) and every diagnostic, in file order.
///
/// The pipeline is `Some` whenever the file is a YAML mapping. If any diagnostic is an error
/// (see [`crate::diag::has_errors`]) it is partial — steps without a usable `id` or `uses` are
/// left out, bad values are left at their defaults — and must not be run.
pub fn parse(path: &str, text: &str) -> (Option<Pipeline>, Vec<Diagnostic>) {
    let file = Arc::new(SourceFile {
        path: path.to_owned(),
        text: text.to_owned(),
    });
    let source = Source::new(text);
    let mut reader = Reader {
        src: &source,
        file: Arc::clone(&file),
        diags: Vec::new(),
        refs: Vec::new(),
    };
    let pipeline = match yaml::load(&source) {
        Loaded::Empty => {
            reader.empty_file();
            None
        }
        Loaded::Fatal(problem) => {
            reader.tree_problem(problem);
            None
        }
        Loaded::Doc(root, problems) => {
            for p in problems {
                reader.tree_problem(p);
            }
            reader.pipeline(&root)
        }
    };
    (pipeline, reader.finish())
}

/// Where an expression was written, for the reference checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The pipeline-level `env`.
    Pipeline,
    /// The step at this index of [`ReadStep`]s.
    Step(usize),
}

/// A context path read by an expression, and where.
#[derive(Debug, Clone)]
pub(crate) struct RefUse {
    pub(crate) owner: Owner,
    pub(crate) path: Vec<String>,
    pub(crate) span: Span,
    /// Inside a dynamic matrix axis.
    pub(crate) in_axis: bool,
}

/// A step as read, before the checks; `id`/`uses` hold placeholders when missing.
#[derive(Debug, Clone)]
pub(crate) struct ReadStep {
    pub(crate) step: Step,
    /// `id` was a string (it may still break the pattern).
    pub(crate) has_id: bool,
    pub(crate) has_uses: bool,
    /// "step `build`" or "step #3".
    pub(crate) label: String,
}

/// A value and the span to blame for it (a key's, when the value is empty).
#[derive(Debug, Clone, Copy)]
struct Val<'n> {
    node: &'n Node,
    span: Span,
}

pub(crate) struct Reader<'s, 't> {
    src: &'s Source<'t>,
    file: Arc<SourceFile>,
    diags: Vec<Diagnostic>,
    refs: Vec<RefUse>,
}

impl Reader<'_, '_> {
    pub(crate) fn report(
        &mut self,
        code: &'static str,
        severity: Severity,
        span: Option<Span>,
        message: String,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            code,
            severity,
            message,
            file: Arc::clone(&self.file),
            span,
            hint,
        });
    }

    pub(crate) fn error(
        &mut self,
        code: &'static str,
        span: Span,
        message: String,
        hint: Option<String>,
    ) {
        self.report(code, Severity::Error, Some(span), message, hint);
    }

    fn warn(&mut self, code: &'static str, span: Span, message: String, hint: Option<String>) {
        self.report(code, Severity::Warning, Some(span), message, hint);
    }

    /// 1-based line of a span, for hints like "first defined on line 4".
    pub(crate) fn line(&self, span: Span) -> u32 {
        span.line
    }

    fn span(&self, node: &Node) -> Span {
        self.src.span(node.start, node.end)
    }

    fn val<'n>(&self, node: &'n Node) -> Val<'n> {
        Val {
            node,
            span: self.span(node),
        }
    }

    fn empty_file(&mut self) {
        self.report(
            "K004",
            Severity::Error,
            None,
            "the pipeline file is empty".to_owned(),
            Some("a pipeline needs at least `name:` and `steps:`".to_owned()),
        );
    }

    fn tree_problem(&mut self, p: TreeProblem) {
        let span = self.src.span(p.start, p.end);
        self.error(p.code, span, p.message, p.hint);
    }

    /// Sort by position (problems of the file as a whole first) and drop exact repeats, which
    /// an alias used twice can cause.
    fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| d.span.map(|s| (s.start, s.end)));
        let mut out: Vec<Diagnostic> = Vec::with_capacity(self.diags.len());
        for d in self.diags {
            if !out.iter().any(|o| o == &d) {
                out.push(d);
            }
        }
        out
    }

    fn wrong_type(&mut self, v: Val<'_>, what: &str, expected: &str) {
        let found = v.node.kind_name();
        self.error(
            "K002",
            v.span,
            format!("{what} must be {expected}, found {found}"),
            None,
        );
    }

    /// The entries of a mapping whose keys are in `table`; reports unknown and non-string keys.
    fn entries<'n>(
        &mut self,
        pairs: &'n [(Node, Node)],
        table: &[&str],
        place: &str,
    ) -> Vec<(&'n str, Val<'n>)> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            let Some(key) = k.scalar().map(|s| s.text.as_str()) else {
                let span = self.span(k);
                self.error(
                    "K002",
                    span,
                    format!("keys {place} must be strings, found {}", k.kind_name()),
                    None,
                );
                continue;
            };
            if !table.contains(&key) {
                let span = self.span(k);
                let hint = match suggest(key, table.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if table.is_empty() => "no keys are allowed here".to_owned(),
                    None => format!("known keys are {}", list(table)),
                };
                self.error(
                    "K003",
                    span,
                    format!("unknown key `{key}` {place}"),
                    Some(hint),
                );
                continue;
            }
            // An empty value (`timeout:`) has no width of its own: blame the key.
            let span = if v.start == v.end {
                self.span(k)
            } else {
                self.span(v)
            };
            out.push((key, Val { node: v, span }));
        }
        out
    }

    /// Reports the first key as missing `key`.
    fn missing(&mut self, at: Span, key: &str, place: &str, hint: String) {
        self.error(
            "K004",
            at,
            format!("missing required key `{key}` {place}"),
            Some(hint),
        );
    }

    fn string(&mut self, v: Val<'_>, what: &str, expected: &str) -> Option<Spanned<String>> {
        match v.node.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_owned(),
                span: v.span,
            }),
            None => {
                self.wrong_type(v, what, expected);
                None
            }
        }
    }

    /// A list of strings, or a single string for a list of one.
    fn strings(&mut self, v: Val<'_>, what: &str, expected: &str) -> Vec<Spanned<String>> {
        match &v.node.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    let iv = self.val(item);
                    self.string(iv, &format!("each entry of {what}"), "a string")
                })
                .collect(),
            Kind::Scalar(s) if s.value == ScalarValue::Str => vec![Spanned {
                value: s.text.clone(),
                span: v.span,
            }],
            _ => {
                self.wrong_type(v, what, expected);
                Vec::new()
            }
        }
    }

    /// Warn about repeated entries of a list.
    fn repeated(&mut self, items: &[Spanned<String>], what: &str) {
        for (i, item) in items.iter().enumerate() {
            if let Some(first) = items
                .get(..i)
                .and_then(|b| b.iter().find(|f| f.value == item.value))
            {
                let line = self.line(first.span);
                self.warn(
                    "K008",
                    item.span,
                    format!("`{}` is listed twice in {what}", item.value),
                    Some(format!(
                        "it is already listed on line {line}; remove this one"
                    )),
                );
            }
        }
    }

    fn offset_map(&self, node: &Node) -> Option<OffsetMap> {
        node.scalar().map(|s| OffsetMap::new(self.src, node, s))
    }

    /// The span of a byte range of a scalar's value, or of the whole scalar.
    fn inner_span(&self, map: Option<&OffsetMap>, whole: Span, start: usize, end: usize) -> Span {
        match map.and_then(|m| m.range(start, end)) {
            Some((s, e)) => self.src.span(s, e),
            None => whole,
        }
    }

    /// One char of a scalar's value at `offset` (for a syntax error), or the whole scalar.
    fn char_span(&self, map: Option<&OffsetMap>, whole: Span, text: &str, offset: usize) -> Span {
        let len = text
            .get(offset..)
            .and_then(|t| t.chars().next())
            .map_or(0, char::len_utf8);
        self.inner_span(map, whole, offset, offset + len)
    }

    fn record_refs(
        &mut self,
        refs: Vec<kiln_expr::Reference>,
        base: usize,
        map: Option<&OffsetMap>,
        v: Val<'_>,
        owner: Owner,
        in_axis: bool,
    ) {
        for r in refs {
            let span = self.inner_span(map, v.span, base + r.start, base + r.end);
            self.refs.push(RefUse {
                owner,
                path: r.path,
                span,
                in_axis,
            });
        }
    }

    /// Parse a string as a template, report a syntax error at its column, and record the
    /// references for the checks.
    fn template(
        &mut self,
        text: &str,
        v: Val<'_>,
        owner: Owner,
        what: &str,
        in_axis: bool,
    ) -> Option<Template> {
        let map = if text.contains("${{") {
            self.offset_map(v.node)
        } else {
            None
        };
        match Template::parse(text) {
            Ok(t) => {
                let refs = t.references();
                self.record_refs(refs, 0, map.as_ref(), v, owner, in_axis);
                Some(t)
            }
            Err(e) => {
                let span = self.char_span(map.as_ref(), v.span, text, e.offset);
                self.error(
                    "K104",
                    span,
                    format!("invalid expression in {what}: {}", e.message),
                    None,
                );
                None
            }
        }
    }

    /// `env:`: NAME -> string, number or boolean (as text); values are templates.
    fn env(
        &mut self,
        v: Val<'_>,
        owner: Owner,
        of: &str,
    ) -> Vec<(Spanned<String>, Spanned<Template>)> {
        let pairs = match &v.node.kind {
            Kind::Map(pairs) => pairs,
            _ if v.node.is_null() => return Vec::new(),
            _ => {
                self.wrong_type(v, &format!("`env`{of}"), "a mapping of names to values");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, value) in pairs {
            let kv = self.val(k);
            let Some(name) = self.string(kv, &format!("names in `env`{of}"), "strings") else {
                continue;
            };
            if !keys::is_env_name(&name.value) {
                self.error(
                    "K005",
                    name.span,
                    format!("invalid environment variable name `{}`", name.value),
                    Some(format!("names match `{}`", keys::ENV_PATTERN)),
                );
            }
            let what = format!("`env.{}`{of}", name.value);
            let vv = if value.start == value.end {
                Val {
                    node: value,
                    span: name.span,
                }
            } else {
                self.val(value)
            };
            let text = match value.scalar() {
                Some(s) if s.value != ScalarValue::Null => s.text.clone(),
                _ => {
                    let found = value.kind_name();
                    self.error(
                        "K002",
                        vv.span,
                        format!("{what} must be a string, number or boolean, found {found}"),
                        value
                            .is_null()
                            .then(|| format!("write `{}: \"\"` for an empty value", name.value)),
                    );
                    continue;
                }
            };
            if let Some(t) = self.template(&text, vv, owner, &what, false) {
                out.push((
                    name,
                    Spanned {
                        value: t,
                        span: vv.span,
                    },
                ));
            }
        }
        out
    }

    fn duration(&mut self, v: Val<'_>, what: &str, allow_zero: bool) -> Option<Duration> {
        let example = "a duration such as `90s`, `20m`, `1h30m` or `500ms`";
        let text = match &v.node.kind {
            Kind::Scalar(s) if s.value == ScalarValue::Str => s.text.trim(),
            Kind::Scalar(s) if matches!(s.value, ScalarValue::Int(_) | ScalarValue::Float(_)) => {
                let found = v.node.kind_name();
                let t = s.text.clone();
                self.error(
                    "K002",
                    v.span,
                    format!("{what} must be {example}, found {found}"),
                    Some(format!("add a unit, e.g. `{t}s`")),
                );
                return None;
            }
            _ => {
                self.wrong_type(v, what, example);
                return None;
            }
        };
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(
                    "K005",
                    v.span,
                    format!("{what} must be longer than zero"),
                    None,
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    "K005",
                    v.span,
                    format!("invalid duration `{text}` for {what}: {e}"),
                    Some(format!("write {example}")),
                );
                None
            }
        }
    }

    /// The whole file.
    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        let rv = self.val(root);
        let pairs = match &root.kind {
            Kind::Map(pairs) => pairs,
            _ if root.is_null() => {
                self.empty_file();
                return None;
            }
            _ => {
                self.wrong_type(rv, "a pipeline file", "a mapping with `name` and `steps`");
                return None;
            }
        };
        let first_key = pairs.first().map_or(rv.span, |(k, _)| self.span(k));
        let mut name = None;
        let mut on = None;
        let mut env = Vec::new();
        let mut steps = None;
        let mut concurrency = None;
        for (key, v) in self.entries(pairs, keys::TOP_KEYS, "at the top level") {
            match key {
                "name" => {
                    name = self.string(v, "`name`", "a string");
                    if let Some(n) = &name
                        && n.value.trim().is_empty()
                    {
                        self.error("K005", v.span, "`name` is empty".to_owned(), None);
                    }
                }
                "on" => on = Some(self.triggers(v)),
                "env" => env = self.env(v, Owner::Pipeline, ""),
                "steps" => steps = Some(self.steps(v)),
                "concurrency" => concurrency = self.concurrency(v),
                _ => {}
            }
        }
        if name.is_none() && !pairs.iter().any(|(k, _)| k.as_str() == Some("name")) {
            self.missing(
                first_key,
                "name",
                "at the top level",
                "add `name: <pipeline name>`".to_owned(),
            );
        }
        if steps.is_none() && !pairs.iter().any(|(k, _)| k.as_str() == Some("steps")) {
            self.missing(
                first_key,
                "steps",
                "at the top level",
                "add `steps:` with at least one step".to_owned(),
            );
        }
        let read = steps.unwrap_or_default();
        let refs = std::mem::take(&mut self.refs);
        check::check(self, &read, refs);
        Some(Pipeline {
            file: Arc::clone(&self.file),
            name: name.unwrap_or(Spanned {
                value: String::new(),
                span: first_key,
            }),
            on: on.unwrap_or(Triggers {
                manual: true,
                ..Triggers::default()
            }),
            env,
            steps: read
                .into_iter()
                .filter(|r| r.has_id && r.has_uses)
                .map(|r| r.step)
                .collect(),
            concurrency,
        })
    }

    /// `concurrency:`: a group name, or `{ group, cancel-in-progress }`.
    fn concurrency(&mut self, v: Val<'_>) -> Option<Concurrency> {
        let group = |this: &mut Self, gv: Val<'_>, what: &str| -> Option<Spanned<Template>> {
            let s = this.string(gv, what, "a group name (a string; it may hold `${{ }}`)")?;
            if s.value.trim().is_empty() {
                this.error(
                    "K005",
                    gv.span,
                    format!("{what} is empty"),
                    Some("name the group, e.g. `deploy-${{ git.branch }}`".to_owned()),
                );
                return None;
            }
            let t = this.template(&s.value, gv, Owner::Pipeline, what, false)?;
            Some(Spanned {
                value: t,
                span: s.span,
            })
        };
        match &v.node.kind {
            Kind::Map(pairs) => {
                let mut g = None;
                let mut cancel_in_progress = false;
                for (key, kv) in self.entries(pairs, keys::CONCURRENCY_KEYS, "in `concurrency`") {
                    match key {
                        "group" => g = group(self, kv, "`concurrency.group`"),
                        "cancel-in-progress" => match &kv.node.kind {
                            Kind::Scalar(s) if matches!(s.value, ScalarValue::Bool(_)) => {
                                cancel_in_progress = s.value == ScalarValue::Bool(true);
                            }
                            _ => self.wrong_type(
                                kv,
                                "`concurrency.cancel-in-progress`",
                                "`true` or `false`",
                            ),
                        },
                        _ => {}
                    }
                }
                if g.is_none() && !pairs.iter().any(|(k, _)| k.as_str() == Some("group")) {
                    self.missing(
                        v.span,
                        "group",
                        "in `concurrency`",
                        "add `group: <name>`".to_owned(),
                    );
                }
                g.map(|group| Concurrency {
                    group,
                    cancel_in_progress,
                })
            }
            _ => group(self, v, "`concurrency`").map(|group| Concurrency {
                group,
                cancel_in_progress: false,
            }),
        }
    }

    /// `on:`.
    fn triggers(&mut self, v: Val<'_>) -> Triggers {
        let mut t = Triggers::default();
        let event =
            |this: &mut Self, name: &Spanned<String>, t: &mut Triggers| match name.value.as_str() {
                "push" => t.push = Some(EventFilter::default()),
                "pull_request" => t.pull_request = Some(EventFilter::default()),
                "manual" => t.manual = true,
                other => {
                    let hint = match suggest(other, keys::EVENTS.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("events are {}", list(keys::EVENTS)),
                    };
                    this.error(
                        "K005",
                        name.span,
                        format!("unknown event `{other}` in `on`"),
                        Some(hint),
                    );
                }
            };
        match &v.node.kind {
            _ if v.node.is_null() => t.manual = true,
            Kind::Scalar(_) | Kind::Seq(_) => {
                let names = self.strings(v, "`on`", "a mapping of events");
                for n in &names {
                    event(self, n, &mut t);
                }
            }
            Kind::Map(pairs) => {
                if pairs.is_empty() {
                    t.manual = true;
                }
                for (key, ev) in self.entries(pairs, keys::ON_KEYS, "in `on`") {
                    match key {
                        "push" => t.push = Some(self.filter(ev, "`on.push`")),
                        "pull_request" => {
                            t.pull_request = Some(self.filter(ev, "`on.pull_request`"))
                        }
                        "schedule" => t.schedule = self.schedule(ev),
                        "manual" => {
                            match &ev.node.kind {
                                _ if ev.node.is_null() => {}
                                Kind::Map(p) => {
                                    self.entries(p, keys::MANUAL_KEYS, "in `on.manual`");
                                }
                                _ => self.wrong_type(
                                    ev,
                                    "`on.manual`",
                                    "an empty mapping (`manual: {}`)",
                                ),
                            }
                            t.manual = true;
                        }
                        _ => {}
                    }
                }
            }
        }
        t
    }

    /// `on.schedule`: a list of `{ cron: "<5 fields>" }`, as in GitHub Actions.
    fn schedule(&mut self, v: Val<'_>) -> Vec<Schedule> {
        let example = "a list such as `- cron: \"0 3 * * *\"`";
        let Kind::Seq(items) = &v.node.kind else {
            self.wrong_type(v, "`on.schedule`", example);
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                "K005",
                v.span,
                "`on.schedule` is empty".to_owned(),
                Some(
                    "add an entry such as `- cron: \"0 3 * * *\"`, or remove `schedule`".to_owned(),
                ),
            );
        }
        let mut out = Vec::new();
        for item in items {
            let iv = self.val(item);
            let Kind::Map(pairs) = &item.kind else {
                self.wrong_type(iv, "each entry of `on.schedule`", "a mapping with `cron`");
                continue;
            };
            let mut cron = None;
            for (key, cv) in self.entries(pairs, keys::SCHEDULE_KEYS, "in `on.schedule`") {
                if key == "cron" {
                    cron = self.string(cv, "`on.schedule.cron`", "a string of 5 fields");
                    if let Some(c) = &cron {
                        match crate::cron::Cron::parse(&c.value) {
                            Ok(parsed) => out.push(Schedule {
                                cron: c.clone(),
                                parsed,
                            }),
                            Err(e) => {
                                let map = self.offset_map(cv.node);
                                let span = self.inner_span(map.as_ref(), cv.span, e.start, e.end);
                                self.error(
                                    "K005",
                                    span,
                                    format!("invalid cron expression `{}`: {}", c.value, e.message),
                                    Some("five fields in UTC: minute hour day-of-month month day-of-week, e.g. `0 3 * * *` (daily at 03:00), `*/15 * * * *` (every 15 minutes)".to_owned()),
                                );
                            }
                        }
                    }
                }
            }
            if cron.is_none() && pairs.iter().all(|(k, _)| k.as_str() != Some("cron")) {
                self.missing(
                    iv.span,
                    "cron",
                    "in `on.schedule`",
                    "write `- cron: \"0 3 * * *\"`".to_owned(),
                );
            }
        }
        out
    }

    /// `on.push` / `on.pull_request`.
    fn filter(&mut self, v: Val<'_>, what: &str) -> EventFilter {
        let mut f = EventFilter::default();
        let pairs = match &v.node.kind {
            Kind::Map(pairs) => pairs,
            _ if v.node.is_null() => return f,
            _ => {
                self.wrong_type(
                    v,
                    what,
                    "a mapping of filters (`branches`, `tags`, `paths`, `paths-ignore`)",
                );
                return f;
            }
        };
        for (key, fv) in self.entries(pairs, keys::FILTER_KEYS, &format!("in {what}")) {
            let what = format!("`{}.{key}`", what.trim_matches('`'));
            let globs = self.strings(fv, &what, "a list of glob patterns");
            for g in &globs {
                if g.value.trim().is_empty() {
                    self.error(
                        "K005",
                        g.span,
                        format!("empty pattern in {what}"),
                        Some("remove it; an empty list already matches everything".to_owned()),
                    );
                } else if let Err(why) =
                    crate::trigger::compile_glob(g.value.strip_prefix('!').unwrap_or(&g.value))
                {
                    self.error(
                        "K005",
                        g.span,
                        format!("invalid pattern `{}` in {what}: {why}", g.value),
                        Some("`*` matches within a path segment, `**` across, `?` one character, `[ab]` a class, a leading `!` excludes".to_owned()),
                    );
                }
            }
            match key {
                "branches" => f.branches = globs,
                "tags" => f.tags = globs,
                "paths" => f.paths = globs,
                "paths-ignore" => f.paths_ignore = globs,
                _ => {}
            }
        }
        f
    }

    /// `steps:`.
    fn steps(&mut self, v: Val<'_>) -> Vec<ReadStep> {
        let items = match &v.node.kind {
            Kind::Seq(items) => items,
            _ => {
                self.wrong_type(v, "`steps`", "a list of steps");
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error(
                "K005",
                v.span,
                "`steps` is empty".to_owned(),
                Some("add at least one step with `id` and `uses`".to_owned()),
            );
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let iv = self.val(item);
            match &item.kind {
                Kind::Map(pairs) => {
                    let index = out.len();
                    out.push(self.step(pairs, iv, i + 1, index));
                }
                _ => {
                    let hint = item.as_str().map(|s| {
                        format!(
                            "a step is a mapping: write `- id: <id>` and, below it, `uses: {s}`"
                        )
                    });
                    let found = item.kind_name();
                    self.error(
                        "K002",
                        iv.span,
                        format!(
                            "step #{} must be a mapping with `id` and `uses`, found {found}",
                            i + 1
                        ),
                        hint,
                    );
                }
            }
        }
        out
    }

    /// One step. `number` is 1-based (for messages), `index` its place among read steps.
    fn step(
        &mut self,
        pairs: &[(Node, Node)],
        v: Val<'_>,
        number: usize,
        index: usize,
    ) -> ReadStep {
        let own_id = pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some("id"))
            .and_then(|(_, v)| v.as_str());
        let label = match own_id {
            Some(id) => format!("step `{id}`"),
            None => format!("step #{number}"),
        };
        let of = format!(" of {label}");
        let owner = Owner::Step(index);
        let first_key = pairs.first().map_or(v.span, |(k, _)| self.span(k));
        let placeholder = Spanned {
            value: String::new(),
            span: first_key,
        };
        let mut step = Step {
            id: placeholder.clone(),
            uses: Spanned {
                value: PluginRef::Builtin(String::new()),
                span: first_key,
            },
            with: Config {
                value: serde_json::Value::Object(serde_json::Map::new()),
                spans: BTreeMap::new(),
            },
            needs: Vec::new(),
            condition: None,
            matrix: None,
            env: Vec::new(),
            secrets: Vec::new(),
            timeout: None,
            retry: None,
            continue_on_error: false,
            allow: Allow::default(),
            cache: StepCache::default(),
            span: v.span,
        };
        let (mut has_id, mut has_uses) = (false, false);
        let (mut saw_id, mut saw_uses) = (false, false);
        let place = format!("in {label}");
        for (key, kv) in self.entries(pairs, keys::STEP_KEYS, &place) {
            match key {
                "id" => {
                    saw_id = true;
                    if let Some(id) = self.string(kv, &format!("`id`{of}"), "a string") {
                        self.check_id(&id, "step id");
                        has_id = true;
                        step.id = id;
                    }
                }
                "uses" => {
                    saw_uses = true;
                    if let Some(u) = self.string(kv, &format!("`uses`{of}"), "a plugin reference")
                        && let Some(p) = self.plugin_ref(&u)
                    {
                        has_uses = true;
                        step.uses = Spanned {
                            value: p,
                            span: u.span,
                        };
                    }
                }
                "with" => step.with = self.config(kv, owner, &of),
                "needs" => {
                    step.needs = self.strings(
                        kv,
                        &format!("`needs`{of}"),
                        "a step id or a list of step ids",
                    );
                    self.repeated(&step.needs, &format!("`needs`{of}"));
                }
                "if" => step.condition = self.condition(kv, owner, &of),
                "matrix" => step.matrix = self.matrix(kv, owner, &of),
                "env" => step.env = self.env(kv, owner, &of),
                "secrets" => {
                    step.secrets =
                        self.strings(kv, &format!("`secrets`{of}"), "a list of secret names");
                    for s in &step.secrets {
                        if !keys::is_secret_name(&s.value) {
                            let upper = s.value.to_ascii_uppercase().replace('-', "_");
                            let hint = if keys::is_secret_name(&upper) {
                                format!("did you mean `{upper}`?")
                            } else {
                                format!("secret names match `{}`", keys::SECRET_PATTERN)
                            };
                            self.error(
                                "K005",
                                s.span,
                                format!("invalid secret name `{}`", s.value),
                                Some(hint),
                            );
                        }
                    }
                    let secrets = step.secrets.clone();
                    self.repeated(&secrets, &format!("`secrets`{of}"));
                }
                "timeout" => {
                    step.timeout = self
                        .duration(kv, &format!("`timeout`{of}"), false)
                        .map(|d| Spanned {
                            value: d,
                            span: kv.span,
                        });
                }
                "retry" => step.retry = self.retry(kv, &of),
                "continue-on-error" => match &kv.node.kind {
                    Kind::Scalar(s) if matches!(s.value, ScalarValue::Bool(_)) => {
                        step.continue_on_error = s.value == ScalarValue::Bool(true);
                    }
                    _ => self.wrong_type(
                        kv,
                        &format!("`continue-on-error`{of}"),
                        "`true` or `false`",
                    ),
                },
                "allow" => step.allow = self.allow(kv, &of, owner),
                "cache" => step.cache = self.cache(kv, &of),
                _ => {}
            }
        }
        if !saw_id {
            self.missing(
                first_key,
                "id",
                &place,
                "add `id: <name>`; other steps refer to it in `needs` and `steps.<id>.outputs`"
                    .to_owned(),
            );
        }
        if !saw_uses {
            self.missing(
                first_key,
                "uses",
                &place,
                "add `uses:` with a built-in plugin (e.g. `echo`), a `.wasm` path or a pinned `oci://` reference"
                    .to_owned(),
            );
        }
        ReadStep {
            step,
            has_id,
            has_uses,
            label,
        }
    }

    fn check_id(&mut self, id: &Spanned<String>, what: &str) {
        if keys::is_id(&id.value) {
            return;
        }
        let message = if id.value.len() > keys::ID_MAX_LEN {
            format!(
                "{what} `{}` is longer than {} characters",
                id.value,
                keys::ID_MAX_LEN
            )
        } else {
            format!("invalid {what} `{}`", id.value)
        };
        let fixed = id.value.to_ascii_lowercase().replace([' ', '.'], "-");
        let hint = if keys::is_id(&fixed) {
            format!("did you mean `{fixed}`?")
        } else {
            format!(
                "use lowercase letters, digits, `_` and `-`, starting with a letter (`{}`), at most {} characters",
                keys::ID_PATTERN,
                keys::ID_MAX_LEN
            )
        };
        self.error("K005", id.span, message, Some(hint));
    }

    /// `uses:`.
    fn plugin_ref(&mut self, u: &Spanned<String>) -> Option<PluginRef> {
        let s = u.value.as_str();
        let forms = "`uses` takes a built-in plugin name, a path to a `.wasm` file, or `oci://<registry>/<repository>@sha256:<digest>`";
        let problem = if let Some(rest) = s.strip_prefix("oci://") {
            match rest.rsplit_once('@') {
                Some((name, digest))
                    if !name.is_empty()
                        && !name.contains(char::is_whitespace)
                        && keys::is_sha256_digest(digest) =>
                {
                    return Some(PluginRef::Oci(s.to_owned()));
                }
                Some((_, digest)) if !keys::is_sha256_digest(digest) => (
                    format!("invalid digest `{digest}` in plugin reference `{s}`"),
                    "a digest is `sha256:` followed by 64 lowercase hex digits".to_owned(),
                ),
                Some(_) => (
                    format!("invalid OCI plugin reference `{s}`"),
                    "write `oci://<registry>/<repository>@sha256:<digest>`".to_owned(),
                ),
                None => (
                    format!("OCI plugin reference `{s}` is not pinned by digest"),
                    format!("pin it: `{s}@sha256:<digest>`; a tag can move, a digest cannot"),
                ),
            }
        } else if let Some((scheme, _)) = s.split_once("://") {
            (
                format!("unsupported plugin reference scheme `{scheme}://`"),
                forms.to_owned(),
            )
        } else if s.ends_with(".wasm") && s.len() > ".wasm".len() {
            return Some(PluginRef::Path(s.to_owned()));
        } else if keys::is_builtin(s) {
            return Some(PluginRef::Builtin(s.to_owned()));
        } else if s.contains('/') || s.contains('\\') {
            (
                format!("`{s}` is not a plugin reference"),
                "a path to a plugin component must end in `.wasm`".to_owned(),
            )
        } else {
            (format!("invalid plugin name `{s}`"), forms.to_owned())
        };
        self.error("K005", u.span, problem.0, Some(problem.1));
        None
    }

    /// `with:`.
    fn config(&mut self, v: Val<'_>, owner: Owner, of: &str) -> Config {
        let mut spans = BTreeMap::new();
        if v.node.is_null() {
            spans.insert(String::new(), v.span);
            return Config {
                value: serde_json::Value::Object(serde_json::Map::new()),
                spans,
            };
        }
        if !matches!(v.node.kind, Kind::Map(_)) {
            self.wrong_type(v, &format!("`with`{of}"), "a mapping");
            return Config {
                value: serde_json::Value::Object(serde_json::Map::new()),
                spans,
            };
        }
        let value = self.json(v, String::new(), "with".to_owned(), &mut spans, owner, of);
        Config { value, spans }
    }

    /// A `with:` value as JSON; every string holding `${{` must be a valid template.
    fn json(
        &mut self,
        v: Val<'_>,
        pointer: String,
        display: String,
        spans: &mut BTreeMap<String, Span>,
        owner: Owner,
        of: &str,
    ) -> serde_json::Value {
        use serde_json::Value;
        spans.insert(pointer.clone(), v.span);
        match &v.node.kind {
            Kind::Map(pairs) => {
                let mut obj = serde_json::Map::new();
                for (k, item) in pairs {
                    let Some(key) = k.scalar().map(|s| s.text.clone()) else {
                        let kv = self.val(k);
                        self.wrong_type(kv, &format!("keys in `{display}`{of}"), "strings");
                        continue;
                    };
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    let iv = if item.start == item.end {
                        Val {
                            node: item,
                            span: self.span(k),
                        }
                    } else {
                        self.val(item)
                    };
                    let child = self.json(
                        iv,
                        format!("{pointer}/{escaped}"),
                        format!("{display}.{key}"),
                        spans,
                        owner,
                        of,
                    );
                    obj.insert(key, child);
                }
                Value::Object(obj)
            }
            Kind::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let iv = self.val(item);
                        self.json(
                            iv,
                            format!("{pointer}/{i}"),
                            format!("{display}[{i}]"),
                            spans,
                            owner,
                            of,
                        )
                    })
                    .collect(),
            ),
            Kind::Scalar(s) => match s.value {
                ScalarValue::Null => Value::Null,
                ScalarValue::Bool(b) => Value::Bool(b),
                ScalarValue::Int(i) => Value::from(i),
                ScalarValue::Float(f) => match serde_json::Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => {
                        self.error(
                            "K005",
                            v.span,
                            format!(
                                "`{}` in `{display}`{of} cannot be represented in JSON",
                                s.text
                            ),
                            Some("quote it to pass it as a string".to_owned()),
                        );
                        Value::Null
                    }
                },
                ScalarValue::Str => {
                    if s.text.contains("${{") {
                        self.template(&s.text, v, owner, &format!("`{display}`{of}"), false);
                    }
                    Value::String(s.text.clone())
                }
            },
        }
    }

    /// `if:`: an expression with or without `${{ }}`, or a boolean.
    fn condition(&mut self, v: Val<'_>, owner: Owner, of: &str) -> Option<Spanned<Expr>> {
        let what = format!("`if`{of}");
        let text = match &v.node.kind {
            Kind::Scalar(s) if s.value == ScalarValue::Str => s.text.clone(),
            Kind::Scalar(s) if matches!(s.value, ScalarValue::Bool(_)) => {
                // A literal reads nothing: no references to check.
                let literal = if s.value == ScalarValue::Bool(true) {
                    "true"
                } else {
                    "false"
                };
                return match Expr::parse(literal) {
                    Ok(e) => Some(Spanned {
                        value: e,
                        span: v.span,
                    }),
                    Err(e) => {
                        self.error(
                            "K104",
                            v.span,
                            format!("invalid expression in {what}: {}", e.message),
                            None,
                        );
                        None
                    }
                };
            }
            _ => {
                self.wrong_type(v, &what, "an expression or a boolean");
                return None;
            }
        };
        let map = self.offset_map(v.node);
        let trimmed_start = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        let (inner, base) =
            if trimmed.starts_with("${{") && trimmed.ends_with("}}") && trimmed.len() >= 5 {
                let inner = trimmed.get(3..trimmed.len() - 2).unwrap_or("");
                (inner, trimmed_start + 3)
            } else {
                (text.as_str(), 0)
            };
        if let Some(at) = inner.find("${{") {
            let span = self.char_span(map.as_ref(), v.span, &text, base + at);
            self.error(
                "K104",
                span,
                format!("{what} must be one expression"),
                Some("write the condition without `${{ }}` (e.g. `if: matrix.os == 'linux'`), or as a single `${{ ... }}`".to_owned()),
            );
            return None;
        }
        match Expr::parse(inner) {
            Ok(e) => {
                self.record_refs(e.references(), base, map.as_ref(), v, owner, false);
                Some(Spanned {
                    value: e,
                    span: v.span,
                })
            }
            Err(e) => {
                let span = self.char_span(map.as_ref(), v.span, &text, base + e.offset);
                self.error(
                    "K104",
                    span,
                    format!("invalid expression in {what}: {}", e.message),
                    None,
                );
                None
            }
        }
    }

    /// `matrix:`.
    fn matrix(&mut self, v: Val<'_>, owner: Owner, of: &str) -> Option<Matrix> {
        let what = format!("`matrix`{of}");
        let pairs = match &v.node.kind {
            Kind::Map(pairs) => pairs,
            _ => {
                self.wrong_type(v, &what, "a mapping of axis names to values");
                return None;
            }
        };
        if pairs.is_empty() {
            self.error(
                "K005",
                v.span,
                format!("{what} has no axes"),
                Some("add an axis such as `os: [linux, macos]`, or remove `matrix`".to_owned()),
            );
        }
        let mut axes = Vec::new();
        for (k, value) in pairs {
            let kv = self.val(k);
            let Some(name) = self.string(kv, &format!("axis names in {what}"), "strings") else {
                continue;
            };
            self.check_id(&name, "matrix axis name");
            let axis_what = format!("matrix axis `{}`{of}", name.value);
            let vv = if value.start == value.end {
                Val {
                    node: value,
                    span: name.span,
                }
            } else {
                self.val(value)
            };
            let axis = match &value.kind {
                Kind::Seq(items) => {
                    if items.is_empty() {
                        self.error(
                            "K005",
                            vv.span,
                            format!("{axis_what} has no values"),
                            Some("list at least one value, or remove the axis".to_owned()),
                        );
                    }
                    let mut values = Vec::new();
                    for item in items {
                        let iv = self.val(item);
                        let v = match &item.kind {
                            Kind::Scalar(s) => match s.value {
                                ScalarValue::Bool(b) => Some(serde_json::Value::Bool(b)),
                                ScalarValue::Int(i) => Some(serde_json::Value::from(i)),
                                ScalarValue::Float(f) => {
                                    serde_json::Number::from_f64(f).map(serde_json::Value::Number)
                                }
                                ScalarValue::Str if s.text.contains("${{") => {
                                    self.error(
                                        "K005",
                                        iv.span,
                                        format!("values of {axis_what} are literal; they cannot hold `${{{{ }}}}`"),
                                        Some("to compute the values, make the whole axis one expression: `axis: ${{ ... }}`".to_owned()),
                                    );
                                    None
                                }
                                ScalarValue::Str => Some(serde_json::Value::String(s.text.clone())),
                                ScalarValue::Null => None,
                            },
                            _ => None,
                        };
                        match v {
                            Some(v) => values.push(v),
                            None if item.scalar().is_some_and(|s| s.value == ScalarValue::Str) => {}
                            None => self.wrong_type(
                                iv,
                                &format!("each value of {axis_what}"),
                                "a string, number or boolean",
                            ),
                        }
                    }
                    Axis::Values(values)
                }
                Kind::Scalar(s) if s.value == ScalarValue::Str => {
                    let t = s.text.trim();
                    if !s.text.contains("${{") {
                        self.error(
                            "K002",
                            vv.span,
                            format!("{axis_what} must be a list of values or one `${{{{ }}}}` expression, found a string"),
                            Some(format!("write `[{}]` for a single value", s.text)),
                        );
                        continue;
                    }
                    let single = t.starts_with("${{")
                        && t.ends_with("}}")
                        && t.get(3..).is_some_and(|r| !r.contains("${{"));
                    if !single {
                        self.error(
                            "K005",
                            vv.span,
                            format!("a dynamic {axis_what} must be exactly one `${{{{ ... }}}}` expression"),
                            Some("the expression must yield the list of values, e.g. `${{ steps.affected.outputs.projects }}`".to_owned()),
                        );
                        continue;
                    }
                    let text = s.text.clone();
                    match self.template(&text, vv, owner, &axis_what, true) {
                        Some(t) => Axis::Dynamic(t),
                        None => continue,
                    }
                }
                _ => {
                    self.wrong_type(
                        vv,
                        &axis_what,
                        "a list of values or one `${{ }}` expression",
                    );
                    continue;
                }
            };
            axes.push((
                name,
                Spanned {
                    value: axis,
                    span: vv.span,
                },
            ));
        }
        Some(Matrix { axes, span: v.span })
    }

    fn attempts(&mut self, v: Val<'_>, what: &str) -> Option<u32> {
        match &v.node.kind {
            Kind::Scalar(s) => match s.value {
                ScalarValue::Int(n) if (1..=keys::MAX_ATTEMPTS).contains(&n) => {
                    u32::try_from(n).ok()
                }
                ScalarValue::Int(n) => {
                    self.error(
                        "K005",
                        v.span,
                        format!(
                            "{what} must be between 1 and {}, found {n}",
                            keys::MAX_ATTEMPTS
                        ),
                        Some(
                            "attempts count every try: `3` is the first try and 2 retries"
                                .to_owned(),
                        ),
                    );
                    None
                }
                _ => {
                    self.wrong_type(v, what, "a number of attempts");
                    None
                }
            },
            _ => {
                self.wrong_type(v, what, "a number of attempts");
                None
            }
        }
    }

    /// `retry:`.
    fn retry(&mut self, v: Val<'_>, of: &str) -> Option<Spanned<Retry>> {
        let what = format!("`retry`{of}");
        let spanned = |r: Retry| Spanned {
            value: r,
            span: v.span,
        };
        match &v.node.kind {
            Kind::Scalar(s) if matches!(s.value, ScalarValue::Int(_)) => {
                let attempts = self.attempts(v, &what)?;
                Some(spanned(Retry {
                    attempts,
                    backoff: DEFAULT_BACKOFF,
                    max_backoff: DEFAULT_MAX_BACKOFF,
                }))
            }
            Kind::Map(pairs) => {
                let mut attempts = None;
                let mut saw_attempts = false;
                let mut backoff = Some(None);
                let mut max_backoff = Some(None);
                let mut backoff_span = v.span;
                for (key, kv) in self.entries(pairs, keys::RETRY_KEYS, &format!("in {what}")) {
                    match key {
                        "attempts" => {
                            saw_attempts = true;
                            attempts = self.attempts(kv, &format!("`retry.attempts`{of}"));
                        }
                        "backoff" => {
                            backoff_span = kv.span;
                            backoff = self
                                .duration(kv, &format!("`retry.backoff`{of}"), true)
                                .map(Some);
                        }
                        "max-backoff" => {
                            max_backoff = self
                                .duration(kv, &format!("`retry.max-backoff`{of}"), false)
                                .map(Some);
                        }
                        _ => {}
                    }
                }
                if !saw_attempts {
                    let at = pairs.first().map_or(v.span, |(k, _)| self.span(k));
                    self.missing(
                        at,
                        "attempts",
                        &format!("in {what}"),
                        "add `attempts: <1..10>`".to_owned(),
                    );
                }
                let backoff = backoff?.unwrap_or(DEFAULT_BACKOFF);
                let max_backoff = match max_backoff? {
                    Some(m) => {
                        if m < backoff {
                            self.error(
                                "K005",
                                backoff_span,
                                format!("`retry.backoff`{of} is longer than its `max-backoff`"),
                                Some("lower `backoff` or raise `max-backoff`".to_owned()),
                            );
                            return None;
                        }
                        m
                    }
                    None => DEFAULT_MAX_BACKOFF.max(backoff),
                };
                Some(spanned(Retry {
                    attempts: attempts?,
                    backoff,
                    max_backoff,
                }))
            }
            _ => {
                self.wrong_type(
                    v,
                    &what,
                    "a number of attempts or a mapping with `attempts`",
                );
                None
            }
        }
    }

    /// `allow:`.
    fn allow(&mut self, v: Val<'_>, of: &str, owner: Owner) -> Allow {
        let what = format!("`allow`{of}");
        let mut allow = Allow::default();
        let pairs = match &v.node.kind {
            Kind::Map(pairs) => pairs,
            _ if v.node.is_null() => return allow,
            _ => {
                self.wrong_type(v, &what, "a mapping (`workspace`, `net`)");
                return allow;
            }
        };
        for (key, kv) in self.entries(pairs, keys::ALLOW_KEYS, &format!("in {what}")) {
            match key {
                "workspace" => {
                    let Some(mode) =
                        self.string(kv, &format!("`allow.workspace`{of}"), "`read` or `write`")
                    else {
                        continue;
                    };
                    match mode.value.as_str() {
                        "write" => allow.workspace_write = Some(mode.span),
                        "read" => {}
                        other => {
                            let hint = match suggest(other, keys::WORKSPACE_MODES.iter().copied()) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => "write `read` (the default) or `write`".to_owned(),
                            };
                            self.error(
                                "K005",
                                mode.span,
                                format!("invalid `allow.workspace` mode `{other}`{of}"),
                                Some(hint),
                            );
                        }
                    }
                }
                "net" => {
                    let entries =
                        self.strings(kv, &format!("`allow.net`{of}"), "a list of `host:port`");
                    for e in &entries {
                        if e.value.contains("${{") {
                            // Resolved when the step runs (e.g. `${{ vars.REGISTRY }}`), and
                            // checked as `host:port` then.
                            let iv = match &kv.node.kind {
                                Kind::Seq(items) => items
                                    .iter()
                                    .map(|i| self.val(i))
                                    .find(|iv| iv.span == e.span),
                                _ => Some(kv),
                            };
                            if let Some(iv) = iv {
                                let what = format!("`allow.net`{of}");
                                self.template(&e.value, iv, owner, &what, false);
                            }
                        } else if let Err(why) = keys::check_host_port(&e.value) {
                            self.error(
                                "K005",
                                e.span,
                                format!("invalid `allow.net` entry `{}`: {why}", e.value),
                                Some("write `host:port`, e.g. `deployer.internal:443`".to_owned()),
                            );
                        }
                    }
                    self.repeated(&entries, &format!("`allow.net`{of}"));
                    allow.net = entries;
                }
                _ => {}
            }
        }
        allow
    }

    /// `cache:`: `false`, `true`, or `{ inputs: [globs], outputs: [globs] }`.
    fn cache(&mut self, v: Val<'_>, of: &str) -> StepCache {
        let what = format!("`cache`{of}");
        let mut cache = StepCache {
            span: Some(v.span),
            ..StepCache::default()
        };
        match &v.node.kind {
            Kind::Scalar(s) if matches!(s.value, ScalarValue::Bool(_)) => {
                cache.mode = if s.value == ScalarValue::Bool(true) {
                    CacheMode::On
                } else {
                    CacheMode::Off
                };
            }
            Kind::Map(pairs) => {
                cache.mode = CacheMode::On;
                for (key, kv) in self.entries(pairs, keys::CACHE_KEYS, &format!("in {what}")) {
                    let field = format!("`cache.{key}`{of}");
                    let globs = self.strings(kv, &field, "a list of glob patterns");
                    for g in &globs {
                        if let Err((message, hint)) = keys::check_glob(&g.value) {
                            self.error(
                                "K005",
                                g.span,
                                format!("invalid pattern `{}` in {field}: {message}", g.value),
                                Some(hint),
                            );
                        }
                    }
                    self.repeated(&globs, &field);
                    match key {
                        "inputs" => cache.inputs = Some(globs),
                        "outputs" => cache.outputs = globs,
                        _ => {}
                    }
                }
            }
            _ => self.wrong_type(
                v,
                &what,
                "`true`, `false` or a mapping (`inputs`, `outputs`)",
            ),
        }
        cache
    }
}
