//! The syntax tree of a parsed expression.
//!
//! Chains of the same operator (`a || b || c`, `a.b.c`) are stored flat, so the depth of the
//! tree grows only with nesting (`(`, `[`, `!`, call arguments), which the parser bounds. Walking
//! or dropping a tree therefore cannot overflow the stack, however long the expression.

use serde_json::Value;

use crate::functions::Function;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// Byte range in the parsed text.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `null`, `true`, `false`, a number or a string.
    Literal(Value),
    /// A root of the scope, e.g. `steps`.
    Context(String),
    /// `base.name`, `base['key']`, `base[expr]`, ... in source order.
    Access {
        base: Box<Node>,
        accessors: Vec<Accessor>,
    },
    Call {
        function: Function,
        args: Vec<Node>,
    },
    Not(Box<Node>),
    /// Two or more operands.
    And(Vec<Node>),
    /// Two or more operands.
    Or(Vec<Node>),
    /// `first op1 x1 op2 x2 ...`, evaluated left to right.
    Compare {
        first: Box<Node>,
        rest: Vec<(CompareOp, Node)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Accessor {
    pub kind: AccessorKind,
    /// Byte offset just past the accessor (past the name or the `]`).
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AccessorKind {
    /// `.name`
    Property(String),
    /// `[expr]`
    Index(Node),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Node {
    /// Calls `visit` on this node and every node below it, parents first.
    pub fn walk<'a>(&'a self, visit: &mut impl FnMut(&'a Node)) {
        visit(self);
        match &self.kind {
            Kind::Literal(_) | Kind::Context(_) => {}
            Kind::Access { base, accessors } => {
                base.walk(visit);
                for accessor in accessors {
                    if let AccessorKind::Index(index) = &accessor.kind {
                        index.walk(visit);
                    }
                }
            }
            Kind::Call { args, .. } => args.iter().for_each(|a| a.walk(visit)),
            Kind::Not(operand) => operand.walk(visit),
            Kind::And(operands) | Kind::Or(operands) => operands.iter().for_each(|o| o.walk(visit)),
            Kind::Compare { first, rest } => {
                first.walk(visit);
                rest.iter().for_each(|(_, o)| o.walk(visit));
            }
        }
    }
}

impl Node {
    /// Every context path this node reads, in source order (see [`crate::Reference`]).
    pub fn references(&self, out: &mut Vec<crate::Reference>) {
        match &self.kind {
            Kind::Literal(_) => {}
            Kind::Context(name) => out.push(crate::Reference {
                path: vec![name.clone()],
                start: self.start,
                end: self.end,
            }),
            Kind::Access { base, accessors } => {
                let mut dynamic = accessors.as_slice();
                if let Kind::Context(name) = &base.kind {
                    let mut path = vec![name.clone()];
                    let mut end = base.end;
                    for accessor in accessors {
                        let Some(key) = accessor.static_key() else {
                            break;
                        };
                        path.push(key);
                        end = accessor.end;
                    }
                    dynamic = accessors.get(path.len() - 1..).unwrap_or_default();
                    out.push(crate::Reference {
                        path,
                        start: base.start,
                        end,
                    });
                } else {
                    base.references(out);
                }
                for accessor in dynamic {
                    if let AccessorKind::Index(index) = &accessor.kind {
                        index.references(out);
                    }
                }
            }
            Kind::Call { args, .. } => args.iter().for_each(|a| a.references(out)),
            Kind::Not(operand) => operand.references(out),
            Kind::And(operands) | Kind::Or(operands) => {
                operands.iter().for_each(|o| o.references(out));
            }
            Kind::Compare { first, rest } => {
                first.references(out);
                rest.iter().for_each(|(_, o)| o.references(out));
            }
        }
    }
}

impl Accessor {
    /// The key if it is known without evaluating anything: `.name`, `['name']` or `[0]`
    /// (an array index is written as its decimal digits).
    fn static_key(&self) -> Option<String> {
        match &self.kind {
            AccessorKind::Property(name) => Some(name.clone()),
            AccessorKind::Index(Node {
                kind: Kind::Literal(Value::String(key)),
                ..
            }) => Some(key.clone()),
            AccessorKind::Index(Node {
                kind: Kind::Literal(Value::Number(n)),
                ..
            }) => n.as_u64().map(|i| i.to_string()),
            AccessorKind::Index(_) => None,
        }
    }
}
