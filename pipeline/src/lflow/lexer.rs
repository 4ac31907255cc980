//! Tokens of OVN's logical-flow language (`man ovn-sb`, "Lexical Syntax").
//!
//! Follows ovn-northd's own lexer on the points where the language is
//! ambiguous: a MAC or IPv6 address may start with a letter (`ae:31:…`),
//! so a run of hex digits followed by `:` is a number, never a name;
//! `0..15` is two integers around `..`, while `10.0.0.1` is one address;
//! an IPv4 address may be followed by `:PORT` (load-balancer backends).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How a constant was written, kept so it can be written back alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Decimal,
    Hex,
    Ipv4,
    Ipv6,
    Ethernet,
}

/// An integer constant of up to 128 bits, optionally with a mask
/// (`10.0.0.0/8`, `0x10/0xf0`, `fe80::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Constant {
    pub value: u128,
    pub mask: Option<u128>,
    pub format: Format,
}

impl Constant {
    pub fn new(value: u128, format: Format) -> Self {
        Constant {
            value,
            mask: None,
            format,
        }
    }

    /// The constant's width as OVN reckons it: an address is as wide as its
    /// kind (so `10.0.0.1` never fits a 16-bit field), a masked number as
    /// its mask, a plain number as its value (at least 1).
    pub fn bits(&self) -> u32 {
        let significant = |v: u128| (128 - v.leading_zeros()).max(1);
        match (self.mask, self.format) {
            (Some(mask), _) => significant(mask),
            (None, Format::Ipv4) => 32,
            (None, Format::Ipv6) => 128,
            (None, Format::Ethernet) => 48,
            (None, _) => significant(self.value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Id(String),
    Str(String),
    Int(Constant),
    /// `$name`: an address set.
    AddrSet(String),
    /// `@name`: a port group.
    PortGroup(String),
    LParen,
    RParen,
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    And,
    Or,
    Ellipsis,
    Comma,
    Semicolon,
    Equals,
    Exchange,
    Decrement,
    /// A lone `-`, as in a NAT port range `1000-2000`.
    Hyphen,
    Colon,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let punct = match self {
            Token::Id(s) => return f.write_str(s),
            Token::Str(s) => return write!(f, "{}", quote(s)),
            Token::Int(c) => return write!(f, "{}", FormatConstant(c)),
            Token::AddrSet(s) => return write!(f, "${s}"),
            Token::PortGroup(s) => return write!(f, "@{s}"),
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LCurly => "{",
            Token::RCurly => "}",
            Token::LSquare => "[",
            Token::RSquare => "]",
            Token::Eq => "==",
            Token::Ne => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::Not => "!",
            Token::And => "&&",
            Token::Or => "||",
            Token::Ellipsis => "..",
            Token::Comma => ",",
            Token::Semicolon => ";",
            Token::Equals => "=",
            Token::Exchange => "<->",
            Token::Decrement => "--",
            Token::Hyphen => "-",
            Token::Colon => ":",
            Token::End => "end of input",
        };
        f.write_str(punct)
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub token: Token,
    pub pos: usize,
}

/// A lexical or syntax error at a byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.pos, self.message)
    }
}

impl std::error::Error for SyntaxError {}

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        pos,
        message: message.into(),
    })
}

fn is_id_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'.'
}

fn is_id_char(c: u8) -> bool {
    is_id_start(c) || c.is_ascii_digit()
}

/// Splits `input` into tokens, ending with [`Token::End`].
pub fn tokenize(input: &str) -> Result<Vec<Spanned>, SyntaxError> {
    let mut tokens = Vec::new();
    tokenize_into(input, &mut tokens)?;
    Ok(tokens)
}

/// [`tokenize`] into `tokens` (emptied first), so that a caller parsing
/// text after text can keep one buffer.
pub fn tokenize_into(input: &str, tokens: &mut Vec<Spanned>) -> Result<(), SyntaxError> {
    tokens.clear();
    let bytes = input.as_bytes();
    let mut p = 0;
    loop {
        while p < bytes.len() && bytes[p].is_ascii_whitespace() {
            p += 1;
        }
        let start = p;
        let Some(&c) = bytes.get(p) else {
            tokens.push(Spanned {
                token: Token::End,
                pos: p,
            });
            return Ok(());
        };
        let next = bytes.get(p + 1).copied();
        let (token, len) = match c {
            b'/' if next == Some(b'/') => {
                p = bytes[p..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| p + n);
                continue;
            }
            b'/' if next == Some(b'*') => {
                let Some(n) = input[p + 2..].find("*/") else {
                    return err(p, "`/*' without matching `*/'");
                };
                p += n + 4;
                continue;
            }
            b'(' => (Token::LParen, 1),
            b')' => (Token::RParen, 1),
            b'{' => (Token::LCurly, 1),
            b'}' => (Token::RCurly, 1),
            b'[' => (Token::LSquare, 1),
            b']' => (Token::RSquare, 1),
            b',' => (Token::Comma, 1),
            b';' => (Token::Semicolon, 1),
            b'=' if next == Some(b'=') => (Token::Eq, 2),
            b'=' => (Token::Equals, 1),
            b'!' if next == Some(b'=') => (Token::Ne, 2),
            b'!' => (Token::Not, 1),
            b'&' if next == Some(b'&') => (Token::And, 2),
            b'|' if next == Some(b'|') => (Token::Or, 2),
            b'<' if next == Some(b'=') => (Token::Le, 2),
            b'<' if input[p..].starts_with("<->") => (Token::Exchange, 3),
            b'<' => (Token::Lt, 1),
            b'>' if next == Some(b'=') => (Token::Ge, 2),
            b'>' => (Token::Gt, 1),
            b'.' if next == Some(b'.') => (Token::Ellipsis, 2),
            b'-' if next == Some(b'-') => (Token::Decrement, 2),
            b'-' => (Token::Hyphen, 1),
            b':' if next != Some(b':') => (Token::Colon, 1),
            b'$' | b'@' => {
                let name_len = bytes[p + 1..]
                    .iter()
                    .take_while(|&&b| is_id_char(b))
                    .count();
                if name_len == 0 || !is_id_start(bytes[p + 1]) {
                    return err(p, format!("`{}' must be followed by a name", c as char));
                }
                let name = input[p + 1..p + 1 + name_len].to_string();
                let token = if c == b'$' {
                    Token::AddrSet(name)
                } else {
                    Token::PortGroup(name)
                };
                (token, 1 + name_len)
            }
            b'"' => {
                let (s, len) = lex_string(input, p)?;
                (Token::Str(s), len)
            }
            b'0'..=b'9' | b':' => lex_number(input, p)?,
            // A MAC or IPv6 address can start with a hex letter; a name never
            // has a colon right after its leading run of hex digits.
            _ if c.is_ascii_hexdigit()
                && bytes[p..].iter().find(|b| !b.is_ascii_hexdigit()) == Some(&b':') =>
            {
                lex_number(input, p)?
            }
            _ if is_id_start(c) => {
                let len = bytes[p..].iter().take_while(|&&b| is_id_char(b)).count();
                (Token::Id(input[p..p + len].to_string()), len)
            }
            b'&' | b'|' | b'.' | b'/' => {
                return err(
                    p,
                    format!(
                        "`{}' is only valid doubled or as part of a number or comment",
                        c as char
                    ),
                )
            }
            _ => {
                let shown = input[p..].chars().next().unwrap_or('?');
                return err(p, format!("invalid character {shown:?}"));
            }
        };
        tokens.push(Spanned { token, pos: start });
        p += len;
    }
}

/// A quoted string with JSON-style escapes; returns it and its length.
fn lex_string(input: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = input[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 2)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    '"' | '\\' | '/' => out.push(e),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        let code = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match code {
                            Some(ch) if hex.len() == 4 => out.push(ch),
                            _ => return err(start + 1 + i, "bad \\u escape in string"),
                        }
                    }
                    other => return err(start + 1 + i, format!("bad escape \\{other} in string")),
                }
            }
            c => out.push(c),
        }
    }
    err(start, "input ends inside quoted string")
}

/// Quotes a string the way the lexer reads it back.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number, address or masked constant at `start`; returns it and its length.
fn lex_number(input: &str, start: usize) -> Result<(Token, usize), SyntaxError> {
    let (value, len) = lex_plain_number(input, start)?;
    let rest = &input[start + len..];
    if !rest.starts_with('/') || rest.starts_with("//") || rest.starts_with("/*") {
        return Ok((Token::Int(value), len));
    }
    let mask_at = start + len + 1;
    let (mask, mask_len) = lex_plain_number(input, mask_at)?;
    let mut value = value;
    value.mask = Some(match (value.format, mask.format) {
        (a, b) if a == b => mask.value,
        (Format::Ipv4, Format::Decimal) if mask.value <= 32 => prefix_mask(mask.value as u32, 32),
        (Format::Ipv6, Format::Decimal) if mask.value <= 128 => prefix_mask(mask.value as u32, 128),
        (Format::Decimal, Format::Hex) if value.value == 0 => {
            value.format = Format::Hex;
            mask.value
        }
        _ => return err(start, "value and mask have incompatible formats"),
    });
    if value.value & !value.mask.unwrap_or(u128::MAX) != 0 {
        return err(start, "value has 1-bits outside its mask");
    }
    Ok((Token::Int(value), len + 1 + mask_len))
}

/// A mask of `prefix` leading one bits in a field of `width` bits.
pub fn prefix_mask(prefix: u32, width: u32) -> u128 {
    let field = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if prefix == 0 {
        0
    } else {
        field & !((1u128 << (width - prefix.min(width))) - 1) & field
    }
}

fn lex_plain_number(input: &str, start: usize) -> Result<(Constant, usize), SyntaxError> {
    let bytes = input.as_bytes();
    // Alphanumerics, colons until the first dot, dots not followed by a dot.
    let mut end = start;
    let mut saw_dot = false;
    while let Some(&b) = bytes.get(end) {
        let ok = b.is_ascii_alphanumeric()
            || (b == b':' && !saw_dot)
            || (b == b'.' && bytes.get(end + 1) != Some(&b'.'));
        if !ok {
            break;
        }
        saw_dot |= b == b'.';
        end += 1;
    }
    let text = &input[start..end];
    let len = end - start;
    let constant = if text.is_empty() {
        return err(start, "number expected");
    } else if let Some(mac) = parse_mac(text) {
        Constant::new(mac, Format::Ethernet)
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        if text.len() > 1 && text.starts_with('0') {
            return err(start, "decimal constants must not have leading zeros");
        }
        match text.parse::<u64>() {
            Ok(v) => Constant::new(v.into(), Format::Decimal),
            Err(_) => return err(start, "decimal constants must be less than 2**64"),
        }
    } else if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let digits = hex.trim_start_matches('0');
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return err(start, "hex digits expected after 0x");
        }
        if digits.len() > 32 {
            return err(start, "hex constant wider than 128 bits");
        }
        Constant::new(
            u128::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).unwrap_or(0),
            Format::Hex,
        )
    } else if let Ok(ip) = text.parse::<Ipv4Addr>() {
        Constant::new(u32::from(ip).into(), Format::Ipv4)
    } else if let Ok(ip) = text.parse::<Ipv6Addr>() {
        Constant::new(u128::from(ip), Format::Ipv6)
    } else {
        return err(start, format!("invalid numeric constant {text:?}"));
    };
    Ok((constant, len))
}

/// `aa:bb:cc:dd:ee:ff`, as OVN writes MACs.
pub fn parse_mac(text: &str) -> Option<u128> {
    if text.len() != 17 {
        return None;
    }
    let mut mac = 0u128;
    for (i, part) in text.split(':').enumerate() {
        if i > 5 || part.len() != 2 {
            return None;
        }
        mac = (mac << 8) | u128::from(u8::from_str_radix(part, 16).ok()?);
    }
    Some(mac)
}

/// Writes a constant back in its own format.
pub struct FormatConstant<'a>(pub &'a Constant);

impl fmt::Display for FormatConstant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let one = |f: &mut fmt::Formatter<'_>, v: u128| match c.format {
            Format::Decimal => write!(f, "{v}"),
            Format::Hex => write!(f, "{v:#x}"),
            Format::Ipv4 => write!(f, "{}", Ipv4Addr::from(v as u32)),
            Format::Ipv6 => write!(f, "{}", Ipv6Addr::from(v)),
            Format::Ethernet => {
                let b = (v as u64).to_be_bytes();
                write!(
                    f,
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[2], b[3], b[4], b[5], b[6], b[7]
                )
            }
        };
        one(f, c.value)?;
        if let Some(mask) = c.mask {
            f.write_str("/")?;
            let width = match c.format {
                Format::Ipv4 => Some(32),
                Format::Ipv6 => Some(128),
                _ => None,
            };
            match width {
                Some(w) if (0..=w).any(|p| prefix_mask(p, w) == mask) => {
                    let prefix = mask.count_ones();
                    write!(f, "{prefix}")?;
                }
                _ => one(f, mask)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        tokenize(s).unwrap().into_iter().map(|t| t.token).collect()
    }

    fn int(value: u128, format: Format) -> Token {
        Token::Int(Constant::new(value, format))
    }

    #[test]
    fn lexes_fields_subfields_and_operators() {
        assert_eq!(
            toks("reg0[0..15] == 0x1 && !ct.est || xxreg1[96..127] <-> ip.ttl-- ;"),
            vec![
                Token::Id("reg0".into()),
                Token::LSquare,
                int(0, Format::Decimal),
                Token::Ellipsis,
                int(15, Format::Decimal),
                Token::RSquare,
                Token::Eq,
                int(1, Format::Hex),
                Token::And,
                Token::Not,
                Token::Id("ct.est".into()),
                Token::Or,
                Token::Id("xxreg1".into()),
                Token::LSquare,
                int(96, Format::Decimal),
                Token::Ellipsis,
                int(127, Format::Decimal),
                Token::RSquare,
                Token::Exchange,
                Token::Id("ip.ttl".into()),
                Token::Decrement,
                Token::Semicolon,
                Token::End,
            ]
        );
    }

    #[test]
    fn lexes_addresses_that_look_like_names() {
        assert_eq!(
            toks("ae:31:fa:c7:81:fc")[0],
            int(0xae31fac781fc, Format::Ethernet)
        );
        assert_eq!(toks("fe80::1")[0], int(0xfe80 << 112 | 1, Format::Ipv6));
        assert_eq!(toks("::")[0], int(0, Format::Ipv6));
        assert_eq!(toks("abc")[0], Token::Id("abc".into()));
        assert_eq!(toks("10.0.0.1")[0], int(0x0a000001, Format::Ipv4));
        // A load-balancer backend: address, colon, port.
        assert_eq!(
            toks("10.0.0.4:80"),
            vec![
                int(0x0a000004, Format::Ipv4),
                Token::Colon,
                int(80, Format::Decimal),
                Token::End
            ]
        );
    }

    #[test]
    fn lexes_masks_and_prefixes() {
        let Token::Int(c) = &toks("192.168.0.0/16")[0] else {
            panic!()
        };
        assert_eq!(c.mask, Some(0xffff0000));
        let Token::Int(c) = &toks("fe80::/64")[0] else {
            panic!()
        };
        assert_eq!(c.mask, Some(u128::MAX << 64));
        let Token::Int(c) = &toks("0/0x1234")[0] else {
            panic!()
        };
        assert_eq!((c.format, c.mask), (Format::Hex, Some(0x1234)));
        let Token::Int(c) = &toks("0x10/0xf0")[0] else {
            panic!()
        };
        assert_eq!(c.mask, Some(0xf0));
        assert!(tokenize("0x11/0xf0").is_err());
        assert!(tokenize("10.0.0.0/0x10").is_err());
    }

    #[test]
    fn lexes_strings_sets_and_comments() {
        assert_eq!(
            toks("inport == \"sw0-p\\\"1\" // comment\n && $as_ip4 /* c */ @pg"),
            vec![
                Token::Id("inport".into()),
                Token::Eq,
                Token::Str("sw0-p\"1".into()),
                Token::And,
                Token::AddrSet("as_ip4".into()),
                Token::PortGroup("pg".into()),
                Token::End,
            ]
        );
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn reports_errors_with_offsets() {
        for (bad, pos, what) in [
            ("a == 01", 5, "leading zeros"),
            ("a == 18446744073709551616", 5, "2**64"),
            ("x & y", 2, "doubled"),
            ("\"open", 0, "inside quoted"),
            ("a == 1.2.3", 5, "invalid numeric"),
            ("$", 0, "followed by a name"),
            ("a # b", 2, "invalid character"),
            ("0x", 0, "hex digits"),
        ] {
            let e = tokenize(bad).unwrap_err();
            assert_eq!(e.pos, pos, "{bad}: {e}");
            assert!(e.message.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_constants_back() {
        for text in [
            "10.0.0.0/8",
            "fe80::/64",
            "0a:00:00:00:00:01",
            "0x10/0xf0",
            "42",
            "::1",
            "10.0.0.0/255.0.255.0",
        ] {
            let Token::Int(c) = &toks(text)[0] else {
                panic!("{text}")
            };
            let back = FormatConstant(c).to_string();
            let Token::Int(again) = &toks(&back)[0] else {
                panic!("{back}")
            };
            assert_eq!(again, c, "{text} -> {back}");
        }
    }
}
