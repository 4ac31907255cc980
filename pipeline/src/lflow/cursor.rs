//! A cursor over tokens, shared by the match and action parsers.

use super::lexer::{tokenize_into, Constant, Spanned, SyntaxError, Token};
use std::cell::Cell;
use std::fmt;

thread_local! {
    /// The last cursor's token buffer, for the next: compiling parses two
    /// texts per flow, and a fresh buffer each time was a tenth of it.
    static SPARE: Cell<Vec<Spanned>> = const { Cell::new(Vec::new()) };
}

/// Largest buffer kept for reuse (a pathological text's is let go).
const SPARE_MAX: usize = 1024;

pub struct Cursor {
    tokens: Vec<Spanned>,
    at: usize,
}

impl Cursor {
    pub fn new(input: &str) -> Result<Cursor, SyntaxError> {
        let mut tokens = SPARE.with(Cell::take);
        tokenize_into(input, &mut tokens)?;
        Ok(Cursor { tokens, at: 0 })
    }

    pub fn peek(&self) -> &Token {
        &self.tokens[self.at].token
    }

    /// The token after the next one.
    pub fn peek2(&self) -> &Token {
        &self.tokens[(self.at + 1).min(self.tokens.len() - 1)].token
    }

    /// Byte offset of the next token.
    pub fn pos(&self) -> usize {
        self.tokens[self.at].pos
    }

    /// Consumes the next token and returns it. The cursor never moves
    /// back, so a consumed token is moved out rather than copied (names
    /// and strings are most of a flow's allocations); the final `End`
    /// stays, as every peek past the input sees it.
    pub fn advance(&mut self) -> Token {
        if self.at + 1 < self.tokens.len() {
            let token = std::mem::replace(&mut self.tokens[self.at].token, Token::End);
            self.at += 1;
            token
        } else {
            self.tokens[self.at].token.clone()
        }
    }

    /// Consumes the next token if it is `token`.
    pub fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == token {
            self.advance();
            true
        } else {
            false
        }
    }

    /// Consumes the next token if it is the identifier `id`.
    pub fn eat_id(&mut self, id: &str) -> bool {
        if matches!(self.peek(), Token::Id(s) if s == id) {
            self.advance();
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, token: &Token) -> Result<(), SyntaxError> {
        if self.eat(token) {
            Ok(())
        } else {
            self.error(format!("expecting `{token}'"))
        }
    }

    pub fn expect_id(&mut self) -> Result<String, SyntaxError> {
        match self.peek() {
            Token::Id(_) => match self.advance() {
                Token::Id(s) => Ok(s),
                _ => self.error("expecting a name"),
            },
            _ => self.error("expecting a name"),
        }
    }

    pub fn expect_string(&mut self) -> Result<String, SyntaxError> {
        match self.peek() {
            Token::Str(_) => match self.advance() {
                Token::Str(s) => Ok(s),
                _ => self.error("expecting a quoted string"),
            },
            _ => self.error("expecting a quoted string"),
        }
    }

    pub fn expect_int(&mut self) -> Result<Constant, SyntaxError> {
        match *self.peek() {
            Token::Int(c) => {
                self.advance();
                Ok(c)
            }
            _ => self.error("expecting an integer"),
        }
    }

    /// A plain decimal integer no larger than `max`.
    pub fn expect_small_int(&mut self, max: u64) -> Result<u64, SyntaxError> {
        let pos = self.pos();
        let c = self.expect_int()?;
        if c.mask.is_some() || c.value > u128::from(max) {
            return Err(SyntaxError {
                pos,
                message: format!("expecting an integer no larger than {max}"),
            });
        }
        Ok(c.value as u64)
    }

    pub fn expect_end(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Token::End => Ok(()),
            _ => self.error("expecting end of input"),
        }
    }

    /// An error at the next token, naming what was found there.
    pub fn error<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            pos: self.pos(),
            message: format!("{}, found `{}'", message.into(), self.peek()),
        })
    }

    /// A field or subfield: `name`, `name[bit]` or `name[low..high]`.
    pub fn field_ref(&mut self) -> Result<FieldRef, SyntaxError> {
        let name = self.expect_id()?;
        let bits = if self.eat(&Token::LSquare) {
            let low = self.expect_small_int(u16::MAX.into())? as u16;
            let high = if self.eat(&Token::Ellipsis) {
                self.expect_small_int(u16::MAX.into())? as u16
            } else {
                low
            };
            if high < low {
                return self.error(format!("subfield [{low}..{high}] runs backwards"));
            }
            self.expect(&Token::RSquare)?;
            Some((low, high))
        } else {
            None
        };
        Ok(FieldRef { name, bits })
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        let mut tokens = std::mem::take(&mut self.tokens);
        if tokens.capacity() <= SPARE_MAX {
            tokens.clear();
            SPARE.with(|spare| spare.set(tokens));
        }
    }
}

/// A field or subfield as written; the symbol table gives it meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub name: String,
    /// Inclusive bit range `[low..high]`; `None` is the whole field.
    pub bits: Option<(u16, u16)>,
}

impl FieldRef {
    pub fn whole(name: &str) -> FieldRef {
        FieldRef {
            name: name.to_string(),
            bits: None,
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match self.bits {
            None => Ok(()),
            Some((low, high)) if low == high => write!(f, "[{low}]"),
            Some((low, high)) => write!(f, "[{low}..{high}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_subfields() {
        let mut c = Cursor::new("reg0 eth.src[40] xxreg1[96..127] reg1[5..2]").unwrap();
        assert_eq!(c.field_ref().unwrap(), FieldRef::whole("reg0"));
        assert_eq!(c.field_ref().unwrap().to_string(), "eth.src[40]");
        assert_eq!(c.field_ref().unwrap().bits, Some((96, 127)));
        assert!(c.field_ref().unwrap_err().message.contains("backwards"));
    }
}
