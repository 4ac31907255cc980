//! Match expressions as written: the syntax tree of a Logical_Flow `match`.
//!
//! Parsing checks the grammar and the symbol table (every name must exist,
//! subfields must fit, bare fields must be one bit wide); meaning — port
//! names, address sets, prerequisites, masks — is given by
//! [`normalize`](super::normalize). The tree formats back to text that
//! parses to the same tree.

use super::cursor::{Cursor, FieldRef};
use super::lexer::{quote, Constant, FormatConstant, SyntaxError, Token};
use super::symbols::{lookup, Symbol};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relop {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Relop {
    fn from_token(t: &Token) -> Option<Relop> {
        Some(match t {
            Token::Eq => Relop::Eq,
            Token::Ne => Relop::Ne,
            Token::Lt => Relop::Lt,
            Token::Le => Relop::Le,
            Token::Gt => Relop::Gt,
            Token::Ge => Relop::Ge,
            _ => return None,
        })
    }

    /// The same comparison with its operands swapped (`1 < x` is `x > 1`).
    fn turn(self) -> Relop {
        match self {
            Relop::Lt => Relop::Gt,
            Relop::Le => Relop::Ge,
            Relop::Gt => Relop::Lt,
            Relop::Ge => Relop::Le,
            same => same,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relop::Eq => "==",
            Relop::Ne => "!=",
            Relop::Lt => "<",
            Relop::Le => "<=",
            Relop::Gt => ">",
            Relop::Ge => ">=",
        }
    }
}

/// One element of the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(Constant),
    Str(String),
    /// `$name`: every address of an address set.
    AddrSet(String),
    /// `@name`: every port of a port group.
    PortGroup(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(c) => write!(f, "{}", FormatConstant(c)),
            Value::Str(s) => f.write_str(&quote(s)),
            Value::AddrSet(s) => write!(f, "${s}"),
            Value::PortGroup(s) => write!(f, "@{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchExpr {
    /// `1` or `0`.
    Bool(bool),
    /// A bare one-bit field or predicate: true when it is 1.
    Field(FieldRef),
    /// `field OP value` or `field OP {v1, v2, …}` (`in_set` records the
    /// braces, which `{x}` and `x` differ by only in text).
    Cmp {
        field: FieldRef,
        op: Relop,
        values: Vec<Value>,
        in_set: bool,
    },
    Not(Box<MatchExpr>),
    And(Vec<MatchExpr>),
    Or(Vec<MatchExpr>),
    /// `is_chassis_resident("port")`: decided where the flow is compiled
    /// (the port is bound to that chassis).
    Resident(String),
}

/// Deepest nesting of parentheses accepted; beyond it input is refused
/// rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// Parses a `match` column.
pub fn parse_match(input: &str) -> Result<MatchExpr, SyntaxError> {
    let mut c = Cursor::new(input)?;
    let e = parse_or_and(&mut c, 0)?;
    if !matches!(c.peek(), Token::End) {
        return c.error("extra tokens at end of input");
    }
    Ok(e)
}

fn parse_or_and(c: &mut Cursor, depth: usize) -> Result<MatchExpr, SyntaxError> {
    if depth > MAX_DEPTH {
        return c.error(format!("expression nested deeper than {MAX_DEPTH} levels"));
    }
    let first = parse_not(c, depth)?;
    let (op, combine): (Token, fn(Vec<MatchExpr>) -> MatchExpr) = match c.peek() {
        Token::And => (Token::And, MatchExpr::And),
        Token::Or => (Token::Or, MatchExpr::Or),
        _ => return Ok(first),
    };
    let mut terms = vec![first];
    while c.eat(&op) {
        terms.push(parse_not(c, depth)?);
    }
    if matches!(c.peek(), Token::And | Token::Or) {
        return c.error("&& and || must be parenthesized when used together");
    }
    Ok(combine(terms))
}

fn parse_not(c: &mut Cursor, depth: usize) -> Result<MatchExpr, SyntaxError> {
    if c.eat(&Token::Not) {
        let pos = c.pos();
        let (e, atomic) = parse_primary(c, depth, true)?;
        if !atomic {
            return Err(SyntaxError {
                pos,
                message: "missing parentheses around operand of !".into(),
            });
        }
        Ok(MatchExpr::Not(Box::new(e)))
    } else {
        parse_primary(c, depth, false).map(|(e, _)| e)
    }
}

/// Returns the expression and whether it is atomic (may follow `!`).
fn parse_primary(
    c: &mut Cursor,
    depth: usize,
    negated: bool,
) -> Result<(MatchExpr, bool), SyntaxError> {
    if c.eat(&Token::LParen) {
        let e = parse_or_and(c, depth + 1)?;
        c.expect(&Token::RParen)?;
        return Ok((e, true));
    }
    if matches!(c.peek(), Token::Id(id) if id == "is_chassis_resident")
        && *c.peek2() == Token::LParen
    {
        c.advance();
        c.advance();
        let port = c.expect_string()?;
        c.expect(&Token::RParen)?;
        return Ok((MatchExpr::Resident(port), true));
    }
    if let Token::Id(_) = c.peek() {
        let pos = c.pos();
        let field = c.field_ref()?;
        let width = check_field(&field, pos)?;
        let Some(op) = Relop::from_token(c.peek()) else {
            if width > 1 && !negated {
                return Err(SyntaxError {
                    pos,
                    message: format!(
                        "explicit `!= 0' is required to test multibit field {field} against 0"
                    ),
                });
            }
            return Ok((MatchExpr::Field(field), true));
        };
        c.advance();
        let (values, in_set) = parse_values(c)?;
        return Ok((
            MatchExpr::Cmp {
                field,
                op,
                values,
                in_set,
            },
            false,
        ));
    }
    // A constant first: a Boolean, or `c OP field [OP c]`.
    let (values, in_set) = parse_values(c)?;
    if let ([Value::Int(k)], false, None) = (values.as_slice(), in_set, Relop::from_token(c.peek()))
    {
        if k.mask.is_none() && k.format == super::lexer::Format::Decimal && k.value <= 1 {
            return Ok((MatchExpr::Bool(k.value == 1), true));
        }
    }
    let Some(op1) = Relop::from_token(c.peek()) else {
        return c.error("expecting relational operator");
    };
    c.advance();
    let pos = c.pos();
    let field = c.field_ref()?;
    check_field(&field, pos)?;
    let first = MatchExpr::Cmp {
        field: field.clone(),
        op: op1.turn(),
        values,
        in_set,
    };
    let Some(op2) = Relop::from_token(c.peek()) else {
        return Ok((first, false));
    };
    let ascending = matches!(op1, Relop::Lt | Relop::Le) && matches!(op2, Relop::Lt | Relop::Le);
    let descending = matches!(op1, Relop::Gt | Relop::Ge) && matches!(op2, Relop::Gt | Relop::Ge);
    if !ascending && !descending {
        return c.error("range expressions must have the form `x < field < y' or `x > field > y'");
    }
    c.advance();
    let (values2, in_set2) = parse_values(c)?;
    let second = MatchExpr::Cmp {
        field,
        op: op2,
        values: values2,
        in_set: in_set2,
    };
    Ok((MatchExpr::And(vec![first, second]), false))
}

/// A single value or a `{…}` set (commas optional, as in OVN).
fn parse_values(c: &mut Cursor) -> Result<(Vec<Value>, bool), SyntaxError> {
    if c.eat(&Token::LCurly) {
        let mut values = Vec::new();
        while !c.eat(&Token::RCurly) {
            values.push(parse_value(c)?);
            c.eat(&Token::Comma);
        }
        Ok((values, true))
    } else {
        Ok((vec![parse_value(c)?], false))
    }
}

fn parse_value(c: &mut Cursor) -> Result<Value, SyntaxError> {
    let value = match c.peek() {
        Token::Int(k) => Value::Int(*k),
        Token::Str(s) => Value::Str(s.clone()),
        Token::AddrSet(s) => Value::AddrSet(s.clone()),
        Token::PortGroup(s) => Value::PortGroup(s.clone()),
        _ => return c.error("expecting constant"),
    };
    c.advance();
    Ok(value)
}

/// Checks a field reference against the symbol table; returns its width.
pub fn check_field(field: &FieldRef, pos: usize) -> Result<u16, SyntaxError> {
    let fail = |message: String| Err(SyntaxError { pos, message });
    let width = match lookup(&field.name) {
        None => return fail(format!("unknown field or predicate `{}'", field.name)),
        Some(Symbol::Predicate(_)) if field.bits.is_some() => {
            return fail(format!("cannot take bits of predicate `{}'", field.name))
        }
        Some(Symbol::Predicate(_)) => 1,
        Some(Symbol::Field(f)) => f.width,
    };
    match field.bits {
        Some((_, high)) if high >= width => fail(format!(
            "{field} is outside `{}', which has {width} bits",
            field.name
        )),
        Some((low, high)) => Ok(high - low + 1),
        None => Ok(width),
    }
}

impl fmt::Display for MatchExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, terms: &[MatchExpr], sep: &str| -> fmt::Result {
            for (i, t) in terms.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                match t {
                    MatchExpr::And(_) | MatchExpr::Or(_) => write!(f, "({t})")?,
                    _ => write!(f, "{t}")?,
                }
            }
            Ok(())
        };
        match self {
            MatchExpr::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            MatchExpr::Resident(port) => write!(f, "is_chassis_resident({})", quote(port)),
            MatchExpr::Field(field) => write!(f, "{field}"),
            MatchExpr::Cmp {
                field,
                op,
                values,
                in_set,
            } => {
                write!(f, "{field} {} ", op.as_str())?;
                if *in_set {
                    f.write_str("{")?;
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{v}")?;
                    }
                    f.write_str("}")
                } else {
                    values.iter().try_for_each(|v| write!(f, "{v}"))
                }
            }
            MatchExpr::Not(e) => match **e {
                MatchExpr::Bool(_) | MatchExpr::Field(_) => write!(f, "!{e}"),
                _ => write!(f, "!({e})"),
            },
            MatchExpr::And(terms) => list(f, terms, " && "),
            MatchExpr::Or(terms) => list(f, terms, " || "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> MatchExpr {
        let e = parse_match(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        let back = e.to_string();
        let again = parse_match(&back).unwrap_or_else(|err| panic!("{back}: {err}"));
        assert_eq!(again, e, "{text} -> {back}");
        e
    }

    #[test]
    fn parses_northd_matches() {
        for text in [
            "1",
            "inport == \"sshd-2\" && eth.src == {0a:00:00:00:00:01}",
            "reg0[10] == 1 && (outport == @pg_sshd && ip4)",
            "outport == @pg_sshd && ip4.src == $web_clients && tcp.dst == 22",
            "ip4.dst == {192.168.2.1, 100.64.1.1} && !ip.later_frag",
            "ip6.dst == ff02::1:ff00:0000/104 || nd_ns",
            "ct.est && !ct.rel && !ct.new && !ct.inv && ct.rpl && ct_mark.blocked == 0",
            "xxreg0 == fe80::200:ff:fe00:1 && xreg0[0..47] == 00:00:00:00:00:01",
            "eth.dst[40] && arp.op == 1 && 1 <= tcp.dst <= 1024",
            "!(ip4 && ip4.src == 10.0.0.0/8)",
            "ip.proto == {6 17}",
            "is_chassis_resident(\"cr-rtoe-gw\") && ip4.dst == 172.16.0.100",
            "!is_chassis_resident(\"cr-rtoe-gw\")",
            "reg9[4] == 0 && ip6.mcast_rsvd",
        ] {
            round_trip(text);
        }
        let e = round_trip("1 < tcp.dst < 100");
        assert!(
            matches!(&e, MatchExpr::And(t) if matches!(t[0], MatchExpr::Cmp { op: Relop::Gt, .. }))
        );
        assert_eq!(round_trip("0"), MatchExpr::Bool(false));
    }

    #[test]
    fn refuses_bad_matches_with_positions() {
        for (text, pos, what) in [
            ("ip4 && tcp || udp", 11, "parenthesized"),
            ("!ip4.src == 1.2.3.4", 1, "missing parentheses"),
            ("ip4.src", 0, "explicit `!= 0'"),
            ("frob == 1", 0, "unknown field"),
            ("reg0[32] == 1", 0, "outside"),
            ("ip4[0]", 0, "predicate"),
            ("tcp.dst ==", 10, "expecting constant"),
            ("(ip4", 4, "expecting `)'"),
            ("ip4 ip6", 4, "extra tokens"),
            ("1 == tcp.dst != 2", 13, "range expressions"),
        ] {
            let e = parse_match(text).unwrap_err();
            assert!(e.message.contains(what) && e.pos == pos, "{text}: {e}");
        }
        let deep = format!("{}ip4{}", "(".repeat(200), ")".repeat(200));
        assert!(parse_match(&deep).unwrap_err().message.contains("nested"));
    }
}

#[cfg(test)]
mod corpus {
    use super::*;

    /// Every distinct match ovn-northd 23.03 wrote for the lab topologies.
    const LAB_MATCHES: &str = include_str!("testdata/matches.txt");

    #[test]
    fn every_lab_match_parses_and_round_trips() {
        let mut n = 0;
        for text in LAB_MATCHES.lines().filter(|l| !l.is_empty()) {
            let e = parse_match(text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(parse_match(&e.to_string()).as_ref(), Ok(&e), "{text}");
            n += 1;
        }
        assert!(n > 200, "corpus has {n} matches");
    }
}
