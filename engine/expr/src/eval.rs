//! Evaluation of a [`Node`] tree against a [`Scope`].
//!
//! Values are borrowed from the scope while only being looked up (`steps.build.outputs`), so
//! reading one key of a large context does not copy the context.

use std::borrow::Cow;

use serde_json::Value;

use crate::ast::{AccessorKind, CompareOp, Kind, Node};
use crate::value::{compare, shorten, strict_eq};
use crate::{EvalError, Scope, truthy};

static NULL: Value = Value::Null;

pub(crate) struct Evaluator<'a> {
    /// The parsed text, to quote the failing part in errors.
    pub source: &'a str,
    pub scope: &'a Scope,
}

impl<'a> Evaluator<'a> {
    pub fn eval(&self, node: &'a Node) -> Result<Cow<'a, Value>, EvalError> {
        match &node.kind {
            Kind::Literal(value) => Ok(Cow::Borrowed(value)),
            Kind::Context(name) => Ok(Cow::Borrowed(self.scope.roots.get(name).unwrap_or(&NULL))),
            Kind::Access { base, accessors } => {
                let mut value = self.eval(base)?;
                for accessor in accessors {
                    value = match &accessor.kind {
                        AccessorKind::Property(name) => child(value, |v| property(v, name)),
                        AccessorKind::Index(index) => {
                            let key = self.eval(index)?;
                            child(value, |v| element(v, &key))
                        }
                    };
                }
                Ok(value)
            }
            Kind::Call { function, args } => {
                let values = args
                    .iter()
                    .map(|arg| self.eval(arg))
                    .collect::<Result<Vec<_>, _>>()?;
                let values: Vec<&Value> = values.iter().map(|v| v.as_ref()).collect();
                function
                    .call(&values, self.scope.status)
                    .map(Cow::Owned)
                    .map_err(|message| self.error(node.start, node.end, &message))
            }
            Kind::Not(operand) => {
                let value = self.eval(operand)?;
                Ok(Cow::Owned(Value::Bool(!truthy(&value))))
            }
            Kind::And(operands) => self.short_circuit(operands, false),
            Kind::Or(operands) => self.short_circuit(operands, true),
            Kind::Compare { first, rest } => {
                let mut left = self.eval(first)?;
                for (op, right) in rest {
                    let right_value = self.eval(right)?;
                    let result = match op {
                        CompareOp::Eq => strict_eq(&left, &right_value),
                        CompareOp::Ne => !strict_eq(&left, &right_value),
                        CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => {
                            let ordering = compare(&left, &right_value)
                                .map_err(|message| self.error(node.start, right.end, &message))?;
                            match op {
                                CompareOp::Lt => ordering.is_lt(),
                                CompareOp::Le => ordering.is_le(),
                                CompareOp::Gt => ordering.is_gt(),
                                _ => ordering.is_ge(),
                            }
                        }
                    };
                    left = Cow::Owned(Value::Bool(result));
                }
                Ok(left)
            }
        }
    }

    /// `&&` (`stop_when` false) and `||` (`stop_when` true): the first operand whose
    /// truthiness is `stop_when`, else the last operand.
    fn short_circuit(
        &self,
        operands: &'a [Node],
        stop_when: bool,
    ) -> Result<Cow<'a, Value>, EvalError> {
        let mut value = Cow::Borrowed(&NULL);
        for operand in operands {
            value = self.eval(operand)?;
            if truthy(&value) == stop_when {
                break;
            }
        }
        Ok(value)
    }

    fn error(&self, start: usize, end: usize, message: &str) -> EvalError {
        let text = self.source.get(start..end).unwrap_or_default();
        EvalError(format!("{message} (in `{}`)", shorten(text, 60)))
    }
}

/// The part `pick` selects, borrowed if `value` is; `null` if there is none.
fn child<'a>(
    value: Cow<'a, Value>,
    pick: impl for<'v> Fn(&'v Value) -> Option<&'v Value>,
) -> Cow<'a, Value> {
    match value {
        Cow::Borrowed(value) => Cow::Borrowed(pick(value).unwrap_or(&NULL)),
        Cow::Owned(value) => Cow::Owned(pick(&value).cloned().unwrap_or(Value::Null)),
    }
}

fn property<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(name),
        _ => None,
    }
}

/// `value[key]`: an object by a string key, an array by a whole non-negative number.
fn element<'v>(value: &'v Value, key: &Value) -> Option<&'v Value> {
    match (value, key) {
        (Value::Object(map), Value::String(name)) => map.get(name),
        (Value::Array(items), Value::Number(n)) => {
            let index = n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            })?;
            items.get(usize::try_from(index).ok()?)
        }
        _ => None,
    }
}
