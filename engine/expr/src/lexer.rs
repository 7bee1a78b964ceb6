//! Turns expression text into tokens with byte spans.

use crate::SyntaxError;
use crate::value::shorten;

/// What a token is. Words (`env`, `null`, `contains`) are all [`TokenKind::Ident`]: whether a
/// word is a keyword, a context or a function depends on where it stands, so the parser decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Ident(String),
    Number(serde_json::Number),
    String(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// The end of the text; always the last token.
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

/// Split `source` into tokens; the last one is [`TokenKind::End`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lexer = Lexer {
        source,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    source: &'a str,
    /// Byte offset of the next unread character; always on a character boundary.
    pos: usize,
    tokens: Vec<Token>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source.get(self.pos..)?.chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.source.get(self.pos..)?.chars();
        chars.next();
        chars.next()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            end: self.pos,
        });
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            if is_ident_start(c) {
                self.ident(start);
                continue;
            }
            if c.is_ascii_digit()
                || (c == '-' && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
            {
                self.number(start)?;
                continue;
            }
            if c == '\'' {
                self.string(start)?;
                continue;
            }
            let second = self.peek_second();
            let (kind, len) = match (c, second) {
                ('(', _) => (TokenKind::LParen, 1),
                (')', _) => (TokenKind::RParen, 1),
                ('[', _) => (TokenKind::LBracket, 1),
                (']', _) => (TokenKind::RBracket, 1),
                ('.', _) => (TokenKind::Dot, 1),
                (',', _) => (TokenKind::Comma, 1),
                ('=', Some('=')) => (TokenKind::Eq, 2),
                ('!', Some('=')) => (TokenKind::Ne, 2),
                ('!', _) => (TokenKind::Not, 1),
                ('<', Some('=')) => (TokenKind::Le, 2),
                ('<', _) => (TokenKind::Lt, 1),
                ('>', Some('=')) => (TokenKind::Ge, 2),
                ('>', _) => (TokenKind::Gt, 1),
                ('&', Some('&')) => (TokenKind::And, 2),
                ('|', Some('|')) => (TokenKind::Or, 2),
                _ => return Err(unexpected_character(c, start)),
            };
            self.pos += len;
            self.push(kind, start);
        }
        let end = self.source.len();
        self.tokens.push(Token {
            kind: TokenKind::End,
            start: end,
            end,
        });
        Ok(())
    }

    fn ident(&mut self, start: usize) {
        while let Some(c) = self.peek().filter(|&c| is_ident_continue(c)) {
            self.pos += c.len_utf8();
        }
        let name = self
            .source
            .get(start..self.pos)
            .unwrap_or_default()
            .to_owned();
        self.push(TokenKind::Ident(name), start);
    }

    /// `-?[0-9]+(\.[0-9]+)?`. A word character right after it (`1abc`, `1e3`) is an error
    /// rather than two tokens, so the message names the whole malformed number.
    fn number(&mut self, start: usize) -> Result<(), SyntaxError> {
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        self.skip_digits();
        let mut decimal = false;
        if self.peek() == Some('.') && self.peek_second().is_some_and(|d| d.is_ascii_digit()) {
            decimal = true;
            self.pos += 1;
            self.skip_digits();
        }
        if self.peek().is_some_and(is_ident_continue) {
            while let Some(c) = self.peek().filter(|&c| is_ident_continue(c) || c == '.') {
                self.pos += c.len_utf8();
            }
            let text = self.source.get(start..self.pos).unwrap_or_default();
            return Err(SyntaxError {
                offset: start,
                message: format!(
                    "invalid number `{}`; numbers are written like `3`, `-1` or `0.5`",
                    shorten(text, 30)
                ),
            });
        }
        let text = self.source.get(start..self.pos).unwrap_or_default();
        let integer = if decimal {
            None
        } else {
            text.parse::<i64>().ok().map(serde_json::Number::from)
        };
        let number = integer
            .or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
            })
            .ok_or_else(|| SyntaxError {
                offset: start,
                message: format!("number `{}` is too large", shorten(text, 30)),
            })?;
        self.push(TokenKind::Number(number), start);
        Ok(())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A single-quoted string; `''` inside it is one `'`.
    fn string(&mut self, start: usize) -> Result<(), SyntaxError> {
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(SyntaxError {
                        offset: start,
                        message: "unterminated string; close it with `'` (write `''` for a quote inside a string)".to_owned(),
                    });
                }
                Some('\'') if self.peek_second() == Some('\'') => {
                    value.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    value.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        self.push(TokenKind::String(value), start);
        Ok(())
    }
}

fn unexpected_character(c: char, offset: usize) -> SyntaxError {
    let hint = match c {
        '=' => "; use `==` to compare",
        '&' => "; use `&&` for \"and\"",
        '|' => "; use `||` for \"or\"",
        '"' => "; strings use single quotes, like `'text'`",
        '-' => "; there is no subtraction, only negative numbers like `-1`",
        '{' | '}' | '$' => "; `${{` and `}}` only surround a whole expression",
        _ => "",
    };
    let shown = if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    };
    SyntaxError {
        offset,
        message: format!("unexpected character `{shown}`{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize(source)
            .expect("the text tokenizes")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn words_with_dashes_are_one_identifier() {
        assert_eq!(
            kinds("my-step_2"),
            [TokenKind::Ident("my-step_2".into()), TokenKind::End]
        );
    }

    #[test]
    fn integers_stay_integers_and_decimals_become_floats() {
        assert_eq!(
            kinds("3 -1.5"),
            [
                TokenKind::Number(3.into()),
                TokenKind::Number(serde_json::Number::from_f64(-1.5).expect("finite")),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn a_doubled_quote_inside_a_string_is_one_quote() {
        assert_eq!(
            kinds("'it''s'"),
            [TokenKind::String("it's".into()), TokenKind::End]
        );
    }

    #[test]
    fn two_character_operators_win_over_one_character_ones() {
        assert_eq!(
            kinds("!= ! <= < >= > == && ||"),
            [
                TokenKind::Ne,
                TokenKind::Not,
                TokenKind::Le,
                TokenKind::Lt,
                TokenKind::Ge,
                TokenKind::Gt,
                TokenKind::Eq,
                TokenKind::And,
                TokenKind::Or,
                TokenKind::End
            ]
        );
    }

    #[test]
    fn token_spans_are_byte_offsets() {
        let tokens = tokenize("é == 'ü'").err();
        assert_eq!(tokens.map(|e| e.offset), Some(0));
        let tokens = tokenize(" 'ü' == a").expect("the text tokenizes");
        assert_eq!((tokens[0].start, tokens[0].end), (1, 5));
        assert_eq!((tokens[2].start, tokens[2].end), (9, 10));
    }

    #[test]
    fn a_single_equals_sign_suggests_double_equals() {
        let error = tokenize("a = 1").expect_err("`=` is not an operator");
        assert_eq!(error.offset, 2);
        assert_eq!(
            error.message,
            "unexpected character `=`; use `==` to compare"
        );
    }

    #[test]
    fn a_number_glued_to_letters_is_one_invalid_number() {
        let error = tokenize("x == 1e3").expect_err("no exponents");
        assert_eq!(error.offset, 5);
        assert!(error.message.starts_with("invalid number `1e3`"), "{error}");
    }
}
