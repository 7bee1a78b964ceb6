//! Recursive descent from tokens to a [`Node`] tree, with GitHub Actions precedence.
//!
//! ```text
//! or       := and ('||' and)*
//! and      := equality ('&&' equality)*
//! equality := relation (('==' | '!=') relation)*
//! relation := unary (('<' | '<=' | '>' | '>=') unary)*
//! unary    := '!' unary | postfix
//! postfix  := primary ('.' name | '[' or ']')*
//! primary  := literal | function '(' (or (',' or)*)? ')' | context | '(' or ')'
//! ```

use serde_json::Value;

use crate::SyntaxError;
use crate::ast::{Accessor, AccessorKind, CompareOp, Kind, Node};
use crate::functions::{Function, format_string};
use crate::lexer::{Token, TokenKind, tokenize};
use crate::value::shorten;

/// How deeply `(`, `[`, `!` and function calls may nest. The parser and the evaluator recurse
/// once per level, so this bound keeps any input from overflowing the stack.
pub const MAX_DEPTH: usize = 64;

pub(crate) fn parse(source: &str) -> Result<Node, SyntaxError> {
    let tokens = tokenize(source)?;
    let end = Token {
        kind: TokenKind::End,
        start: source.len(),
        end: source.len(),
    };
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        end,
    };
    if parser.peek().kind == TokenKind::End {
        return Err(SyntaxError {
            offset: 0,
            message:
                "empty expression; write a value or a condition, e.g. `steps.build.outputs.digest`"
                    .to_owned(),
        });
    }
    let node = parser.expr(0)?;
    let next = parser.bump();
    if next.kind != TokenKind::End {
        return Err(parser.unexpected(
            &next,
            "an operator (`==`, `!=`, `<`, `&&`, `||`, ...) or the end of the expression",
        ));
    }
    Ok(node)
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Returned by `peek` past the last token, so lookups never fail.
    end: Token,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.end)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    /// `unexpected `)` after `steps.a.`; expected a property name`.
    fn unexpected(&self, token: &Token, expected: &str) -> SyntaxError {
        let found = match token.kind {
            TokenKind::End => "end of expression".to_owned(),
            _ => format!(
                "`{}`",
                shorten(
                    self.source.get(token.start..token.end).unwrap_or_default(),
                    40
                )
            ),
        };
        let before = self.source.get(..token.start).unwrap_or_default().trim();
        let after = if before.is_empty() {
            String::new()
        } else {
            format!(" after `{}`", shorten_start(before, 40))
        };
        SyntaxError {
            offset: token.start,
            message: format!("unexpected {found}{after}; expected {expected}"),
        }
    }

    /// The depth one level down, or an error at the token that opens it.
    fn enter(&self, depth: usize, opening: &Token) -> Result<usize, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(SyntaxError {
                offset: opening.start,
                message: format!(
                    "expression nests more than {MAX_DEPTH} levels of `(`, `[`, `!` or function calls; simplify it"
                ),
            });
        }
        Ok(depth + 1)
    }

    fn expr(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        self.logical(depth, &TokenKind::Or, Self::and, Kind::Or)
    }

    fn and(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        self.logical(depth, &TokenKind::And, Self::equality, Kind::And)
    }

    /// `operand (op operand)*`, kept flat.
    fn logical(
        &mut self,
        depth: usize,
        op: &TokenKind,
        operand: fn(&mut Self, usize) -> Result<Node, SyntaxError>,
        make: fn(Vec<Node>) -> Kind,
    ) -> Result<Node, SyntaxError> {
        let first = operand(self, depth)?;
        if self.peek().kind != *op {
            return Ok(first);
        }
        let start = first.start;
        let mut operands = vec![first];
        while self.peek().kind == *op {
            self.bump();
            operands.push(operand(self, depth)?);
        }
        let end = operands.last().map_or(start, |o| o.end);
        Ok(Node {
            kind: make(operands),
            start,
            end,
        })
    }

    fn equality(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        self.comparison(depth, Self::relation, |kind| match kind {
            TokenKind::Eq => Some(CompareOp::Eq),
            TokenKind::Ne => Some(CompareOp::Ne),
            _ => None,
        })
    }

    fn relation(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        self.comparison(depth, Self::unary, |kind| match kind {
            TokenKind::Lt => Some(CompareOp::Lt),
            TokenKind::Le => Some(CompareOp::Le),
            TokenKind::Gt => Some(CompareOp::Gt),
            TokenKind::Ge => Some(CompareOp::Ge),
            _ => None,
        })
    }

    /// `operand (op operand)*`, left-associative, kept flat.
    fn comparison(
        &mut self,
        depth: usize,
        operand: fn(&mut Self, usize) -> Result<Node, SyntaxError>,
        op: fn(&TokenKind) -> Option<CompareOp>,
    ) -> Result<Node, SyntaxError> {
        let first = operand(self, depth)?;
        let mut rest = Vec::new();
        while let Some(op) = op(&self.peek().kind) {
            self.bump();
            rest.push((op, operand(self, depth)?));
        }
        let Some((_, last)) = rest.last() else {
            return Ok(first);
        };
        Ok(Node {
            start: first.start,
            end: last.end,
            kind: Kind::Compare {
                first: Box::new(first),
                rest,
            },
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if self.peek().kind != TokenKind::Not {
            return self.postfix(depth);
        }
        let not = self.bump();
        let operand = self.unary(self.enter(depth, &not)?)?;
        Ok(Node {
            start: not.start,
            end: operand.end,
            kind: Kind::Not(Box::new(operand)),
        })
    }

    fn postfix(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let base = self.primary(depth)?;
        let mut accessors = Vec::new();
        loop {
            match self.peek().kind {
                TokenKind::Dot => {
                    self.bump();
                    let name = self.bump();
                    match name.kind {
                        TokenKind::Ident(property) => accessors.push(Accessor {
                            kind: AccessorKind::Property(property),
                            end: name.end,
                        }),
                        TokenKind::Number(_) => {
                            return Err(self
                                .unexpected(&name, "a property name (index an array with `[0]`)"));
                        }
                        _ => return Err(self.unexpected(&name, "a property name")),
                    }
                }
                TokenKind::LBracket => {
                    let open = self.bump();
                    let index = self.expr(self.enter(depth, &open)?)?;
                    let close = self.bump();
                    if close.kind != TokenKind::RBracket {
                        return Err(self.unexpected(&close, "`]`"));
                    }
                    accessors.push(Accessor {
                        kind: AccessorKind::Index(index),
                        end: close.end,
                    });
                }
                _ => break,
            }
        }
        let Some(last) = accessors.last() else {
            return Ok(base);
        };
        Ok(Node {
            start: base.start,
            end: last.end,
            kind: Kind::Access {
                base: Box::new(base),
                accessors,
            },
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let token = self.bump();
        let kind = match token.kind {
            TokenKind::Number(ref n) => Kind::Literal(Value::Number(n.clone())),
            TokenKind::String(ref s) => Kind::Literal(Value::String(s.clone())),
            TokenKind::Ident(ref name) if self.peek().kind == TokenKind::LParen => {
                return self.call(&token, name, depth);
            }
            TokenKind::Ident(ref name) => match name.as_str() {
                "null" => Kind::Literal(Value::Null),
                "true" => Kind::Literal(Value::Bool(true)),
                "false" => Kind::Literal(Value::Bool(false)),
                _ => {
                    if let Some(function) = Function::lookup(name) {
                        return Err(SyntaxError {
                            offset: token.start,
                            message: format!(
                                "`{name}` is a function; call it as `{}`",
                                function.signature()
                            ),
                        });
                    }
                    Kind::Context(name.clone())
                }
            },
            TokenKind::LParen => {
                let mut inner = self.expr(self.enter(depth, &token)?)?;
                let close = self.bump();
                if close.kind != TokenKind::RParen {
                    return Err(self.unexpected(&close, "`)`"));
                }
                inner.start = token.start;
                inner.end = close.end;
                return Ok(inner);
            }
            _ => return Err(self.unexpected(&token, "a value")),
        };
        Ok(Node {
            kind,
            start: token.start,
            end: token.end,
        })
    }

    fn call(&mut self, name: &Token, function: &str, depth: usize) -> Result<Node, SyntaxError> {
        let function = Function::lookup(function).ok_or_else(|| SyntaxError {
            offset: name.start,
            message: Function::unknown_message(function),
        })?;
        let open = self.bump();
        let depth = self.enter(depth, &open)?;
        let mut args = Vec::new();
        let close = if self.peek().kind == TokenKind::RParen {
            self.bump()
        } else {
            loop {
                args.push(self.expr(depth)?);
                let next = self.bump();
                match next.kind {
                    TokenKind::Comma => {}
                    TokenKind::RParen => break next,
                    _ => return Err(self.unexpected(&next, "`,` or `)`")),
                }
            }
        };
        if let Some(message) = function.check_arity(args.len()) {
            return Err(SyntaxError {
                offset: name.start,
                message,
            });
        }
        if let (Function::Format, Some(first)) = (function, args.first())
            && let Kind::Literal(Value::String(template)) = &first.kind
        {
            let values = vec![String::new(); args.len().saturating_sub(1)];
            format_string(template, &values).map_err(|message| SyntaxError {
                offset: first.start,
                message,
            })?;
        }
        Ok(Node {
            kind: Kind::Call { function, args },
            start: name.start,
            end: close.end,
        })
    }
}

/// At most the last `max` characters of `text`, with `…` when cut.
fn shorten_start(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let cut = text
        .char_indices()
        .nth(count - max)
        .map_or(0, |(index, _)| index);
    format!("…{}", text.get(cut..).unwrap_or_default())
}
