//! Actions of the logical-flow language (`man ovn-sb`, Logical_Flow
//! `actions`), parsed into a typed program that formats back to text which
//! parses to the same program.
//!
//! Core actions (`next`, `output`, assignments, `<->`, `--`, nested blocks,
//! NAT and load balancing) have their own variants. The many controller
//! functions (`put_arp(…)`, `R = lookup_nd(…)`, `log(…)`, …) share one
//! variant, [`Action::Call`], whose function is an enum and whose arguments
//! are checked against that function's signature, so a misspelt name or a
//! wrong argument list is refused at parse time as OVN refuses it.

use super::cursor::{Cursor, FieldRef};
use super::lexer::{quote, Constant, Format, FormatConstant, SyntaxError, Token};
use crate::network::Pipeline;
use std::fmt;

/// A parsed `actions` column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actions(pub Vec<Action>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `next;`, `next(N);`, `next(pipeline=P, table=N);`
    Next {
        pipeline: Option<Pipeline>,
        table: Option<u8>,
    },
    Output,
    Drop,
    /// `field = value;` — a constant, a string (a port name) or a field.
    Assign {
        dst: FieldRef,
        src: Source,
    },
    /// `field1 <-> field2;`
    Exchange(FieldRef, FieldRef),
    /// `ip.ttl--;`
    Decrement(FieldRef),
    Push(FieldRef),
    Pop(FieldRef),
    /// `name { action; … };` (`clone`, `arp`, `icmp4`, `ct_commit`, …).
    Block {
        kind: Block,
        body: Actions,
    },
    /// An action that takes nothing (`ct_next`, `ct_clear`, …).
    Bare(Bare),
    /// `ct_dnat`, `ct_snat` and their `_in_czone` forms, with an optional
    /// address and port range (`ct_snat(203.0.113.2,1000-2000)`).
    Nat {
        kind: Nat,
        target: Option<Constant>,
        /// Lowest port and, for a range, highest.
        ports: Option<(u16, Option<u16>)>,
    },
    /// `ct_lb` / `ct_lb_mark`, bare or with backends.
    CtLb(CtLb),
    /// The old `ct_commit(ct_mark=V[/M], ct_label=V[/M])` form.
    CtCommitArgs(Vec<(String, Constant)>),
    /// A controller function: `[R = ] name(args);`.
    Call {
        result: Option<FieldRef>,
        func: Func,
        args: Args,
    },
}

/// Right-hand side of an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Const(Constant),
    Str(String),
    Field(FieldRef),
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.name() == s)
            }
        }
    };
}

named_enum! {
    /// Actions that run a nested program.
    Block {
        Clone = "clone", Arp = "arp", NdNs = "nd_ns", NdNa = "nd_na", NdNaRouter = "nd_na_router",
        Icmp4 = "icmp4", Icmp4Error = "icmp4_error", Icmp6 = "icmp6", Icmp6Error = "icmp6_error",
        TcpReset = "tcp_reset", SctpAbort = "sctp_abort", Reject = "reject", CtCommit = "ct_commit",
    }
}

named_enum! {
    /// Actions without arguments.
    Bare {
        CtNext = "ct_next", CtClear = "ct_clear", CtCommitNat = "ct_commit_nat",
        CtSnatToVip = "ct_snat_to_vip", Igmp = "igmp", HandleDhcpv6Reply = "handle_dhcpv6_reply",
    }
}

named_enum! {
    /// Connection-tracking NAT actions.
    Nat { Dnat = "ct_dnat", Snat = "ct_snat", DnatInCzone = "ct_dnat_in_czone", SnatInCzone = "ct_snat_in_czone" }
}

/// How a controller function's arguments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly this many fields: `get_arp(outport, reg0)`.
    Fields(usize),
    /// One or two integers: `set_meter(rate[, burst])`.
    Ints(usize, usize),
    /// `key = value` pairs: `put_dhcp_opts(offerip = 10.0.0.2, …)`.
    KeyValues,
    /// Integers with optional weights: `select(1=20, 2=30)`.
    Weighted,
    /// A string then a field: `bind_vport("vport", inport)`.
    StringField,
}

/// Whether a function stores a result (`R = f(…)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    Nothing,
    Result,
}

macro_rules! funcs {
    ($($variant:ident = $text:literal, $ret:ident, $shape:expr;)+) => {
        named_enum! {
            /// Controller and lookup functions.
            Func { $($variant = $text),+ }
        }

        impl Func {
            pub fn signature(self) -> (Returns, Shape) {
                match self { $(Func::$variant => (Returns::$ret, $shape)),+ }
            }
        }
    };
}

funcs! {
    GetArp = "get_arp", Nothing, Shape::Fields(2);
    PutArp = "put_arp", Nothing, Shape::Fields(3);
    LookupArp = "lookup_arp", Result, Shape::Fields(3);
    LookupArpIp = "lookup_arp_ip", Result, Shape::Fields(2);
    GetNd = "get_nd", Nothing, Shape::Fields(2);
    PutNd = "put_nd", Nothing, Shape::Fields(3);
    LookupNd = "lookup_nd", Result, Shape::Fields(3);
    LookupNdIp = "lookup_nd_ip", Result, Shape::Fields(2);
    GetFdb = "get_fdb", Result, Shape::Fields(1);
    PutFdb = "put_fdb", Nothing, Shape::Fields(2);
    LookupFdb = "lookup_fdb", Result, Shape::Fields(2);
    PutDhcpOpts = "put_dhcp_opts", Result, Shape::KeyValues;
    PutDhcpv6Opts = "put_dhcpv6_opts", Result, Shape::KeyValues;
    PutNdRaOpts = "put_nd_ra_opts", Result, Shape::KeyValues;
    DnsLookup = "dns_lookup", Result, Shape::Fields(0);
    CheckPktLarger = "check_pkt_larger", Result, Shape::Ints(1, 1);
    CheckInPortSec = "check_in_port_sec", Result, Shape::Fields(0);
    CheckOutPortSec = "check_out_port_sec", Result, Shape::Fields(0);
    ChkLbHairpin = "chk_lb_hairpin", Result, Shape::Fields(0);
    ChkLbHairpinReply = "chk_lb_hairpin_reply", Result, Shape::Fields(0);
    ChkEcmpNh = "chk_ecmp_nh", Result, Shape::Fields(0);
    ChkEcmpNhMac = "chk_ecmp_nh_mac", Result, Shape::Fields(0);
    ChkLbAff = "chk_lb_aff", Result, Shape::Fields(0);
    CommitEcmpNh = "commit_ecmp_nh", Nothing, Shape::KeyValues;
    CommitLbAff = "commit_lb_aff", Nothing, Shape::KeyValues;
    HandleSvcCheck = "handle_svc_check", Nothing, Shape::Fields(1);
    HandleBfdMsg = "handle_bfd_msg", Nothing, Shape::Fields(0);
    BindVport = "bind_vport", Nothing, Shape::StringField;
    Log = "log", Nothing, Shape::KeyValues;
    SetMeter = "set_meter", Nothing, Shape::Ints(1, 2);
    SetQueue = "set_queue", Nothing, Shape::Ints(1, 1);
    TriggerEvent = "trigger_event", Nothing, Shape::KeyValues;
    Select = "select", Result, Shape::Weighted;
    FwdGroup = "fwd_group", Nothing, Shape::KeyValues;
    Sample = "sample", Nothing, Shape::KeyValues;
    Mirror = "mirror", Nothing, Shape::KeyValues;
}

/// Arguments of a [`Func`], in the shape its signature gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Fields(Vec<FieldRef>),
    Ints(Vec<u64>),
    KeyValues(Vec<(String, ArgValue)>),
    Weighted(Vec<(u64, Option<u64>)>),
    StringField(String, FieldRef),
}

/// A value in a `key = value` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Int(Constant),
    Str(String),
    /// A bare word (`severity=info`, `proto = tcp`) or a field.
    Id(String),
    /// `{a, b, …}`.
    Set(Vec<ArgValue>),
    /// `a, b, …` without braces (`fwd_group(childports="p1", "p2")`).
    List(Vec<ArgValue>),
}

/// A load-balancer backend: an address and maybe a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub ip: Constant,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtLb {
    /// `ct_lb_mark` rather than the older `ct_lb`.
    pub mark: bool,
    /// `None` for the bare form (`ct_lb_mark;`).
    pub backends: Option<Vec<Backend>>,
    pub hash_fields: Option<String>,
    /// `skip_snat`, `force_snat`, … after the last `;`.
    pub flags: Vec<String>,
}

/// Deepest nesting of `{ … }` accepted.
const MAX_DEPTH: usize = 16;

/// Parses an `actions` column. An empty one means drop.
pub fn parse_actions(input: &str) -> Result<Actions, SyntaxError> {
    let mut c = Cursor::new(input)?;
    let actions = parse_list(&mut c, 0, &Token::End)?;
    c.expect_end()?;
    // As in OVN, `drop` stands alone: anything beside it would be a
    // contradiction the flow's author did not mean.
    if actions.0.len() > 1 && actions.0.contains(&Action::Drop) {
        return Err(SyntaxError {
            pos: 0,
            message: "`drop' must be the only action".into(),
        });
    }
    Ok(actions)
}

/// Actions up to (not including) `end`, each ending with `;`.
fn parse_list(c: &mut Cursor, depth: usize, end: &Token) -> Result<Actions, SyntaxError> {
    if depth > MAX_DEPTH {
        return c.error(format!("actions nested deeper than {MAX_DEPTH} levels"));
    }
    let mut list = Vec::new();
    while c.peek() != end && c.peek() != &Token::End {
        list.push(parse_action(c, depth)?);
        c.expect(&Token::Semicolon)?;
    }
    // Parsed actions live as long as the program: a big SB has tens of
    // thousands of distinct lists, and growth's spare room would be a
    // third of their memory.
    list.shrink_to_fit();
    Ok(Actions(list))
}

fn parse_action(c: &mut Cursor, depth: usize) -> Result<Action, SyntaxError> {
    let start = c.pos();
    if !matches!(c.peek(), Token::Id(_)) {
        return c.error("expecting an action");
    }
    // An assignment, exchange or decrement starts with a field.
    if matches!(
        c.peek2(),
        Token::Equals | Token::Exchange | Token::Decrement | Token::LSquare
    ) {
        return parse_field_action(c);
    }
    let Token::Id(name) = c.advance() else {
        return c.error("expecting an action");
    };
    if let Some(kind) = Block::from_name(&name) {
        if kind == Block::CtCommit && c.peek() == &Token::LParen {
            return parse_ct_commit_args(c);
        }
        if c.peek() != &Token::LCurly && kind == Block::CtCommit {
            // `ct_commit;` is the empty block.
            return Ok(Action::Block {
                kind,
                body: Actions::default(),
            });
        }
        c.expect(&Token::LCurly)?;
        let body = parse_list(c, depth + 1, &Token::RCurly)?;
        c.expect(&Token::RCurly)?;
        return Ok(Action::Block { kind, body });
    }
    if let Some(bare) = Bare::from_name(&name) {
        return Ok(Action::Bare(bare));
    }
    if let Some(kind) = Nat::from_name(&name) {
        return parse_nat(c, kind);
    }
    match name.as_str() {
        "next" => parse_next(c),
        "output" => Ok(Action::Output),
        "drop" => Ok(Action::Drop),
        "push" | "pop" => {
            c.expect(&Token::LParen)?;
            let f = c.field_ref()?;
            c.expect(&Token::RParen)?;
            Ok(if name == "push" {
                Action::Push(f)
            } else {
                Action::Pop(f)
            })
        }
        "ct_lb" | "ct_lb_mark" => parse_ct_lb(c, name == "ct_lb_mark"),
        _ => match Func::from_name(&name) {
            Some(func) => parse_call(c, None, func),
            None => Err(SyntaxError {
                pos: start,
                message: format!("unknown action `{name}'"),
            }),
        },
    }
}

fn parse_next(c: &mut Cursor) -> Result<Action, SyntaxError> {
    if !c.eat(&Token::LParen) {
        return Ok(Action::Next {
            pipeline: None,
            table: None,
        });
    }
    let table_arg = |c: &mut Cursor| c.expect_small_int(255).map(|t| t as u8);
    if let Token::Int(_) = c.peek() {
        let table = table_arg(c)?;
        c.expect(&Token::RParen)?;
        return Ok(Action::Next {
            pipeline: None,
            table: Some(table),
        });
    }
    let (mut pipeline, mut table) = (None, None);
    loop {
        let key = c.expect_id()?;
        c.expect(&Token::Equals)?;
        match key.as_str() {
            "pipeline" => {
                let pos = c.pos();
                pipeline = Some(match c.expect_id()?.as_str() {
                    "ingress" => Pipeline::Ingress,
                    "egress" => Pipeline::Egress,
                    other => {
                        return Err(SyntaxError {
                            pos,
                            message: format!("pipeline must be ingress or egress, not {other}"),
                        })
                    }
                })
            }
            "table" => table = Some(table_arg(c)?),
            _ => return c.error(format!("next takes pipeline= and table=, not {key}=")),
        }
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    c.expect(&Token::RParen)?;
    Ok(Action::Next { pipeline, table })
}

fn parse_field_action(c: &mut Cursor) -> Result<Action, SyntaxError> {
    let dst = c.field_ref()?;
    if c.eat(&Token::Decrement) {
        return Ok(Action::Decrement(dst));
    }
    if c.eat(&Token::Exchange) {
        return Ok(Action::Exchange(dst, c.field_ref()?));
    }
    c.expect(&Token::Equals)?;
    match c.peek() {
        Token::Int(_) | Token::Str(_) => {
            let src = match c.advance() {
                Token::Int(k) => Source::Const(k),
                Token::Str(s) => Source::Str(s),
                _ => return c.error("expecting a constant, string or field to assign"),
            };
            Ok(Action::Assign { dst, src })
        }
        Token::Id(name) => match Func::from_name(name) {
            Some(func) if c.peek2() == &Token::LParen => {
                c.advance();
                parse_call(c, Some(dst), func)
            }
            _ => Ok(Action::Assign {
                dst,
                src: Source::Field(c.field_ref()?),
            }),
        },
        _ => c.error("expecting a constant, string or field to assign"),
    }
}

fn parse_call(c: &mut Cursor, result: Option<FieldRef>, func: Func) -> Result<Action, SyntaxError> {
    let (returns, shape) = func.signature();
    match (returns, &result) {
        (Returns::Result, None) => {
            return c.error(format!(
                "{} stores a result: write `R = {}(…)'",
                func.name(),
                func.name()
            ))
        }
        (Returns::Nothing, Some(_)) => {
            return c.error(format!("{} has no result to assign", func.name()))
        }
        _ => {}
    }
    // Functions of no arguments may omit the parentheses.
    if !c.eat(&Token::LParen) {
        return match shape {
            Shape::Fields(0) | Shape::KeyValues => Ok(Action::Call {
                result,
                func,
                args: empty_args(shape),
            }),
            _ => c.error(format!("expecting `(' after {}", func.name())),
        };
    }
    let args = match shape {
        Shape::Fields(n) => {
            let mut fields = Vec::new();
            while c.peek() != &Token::RParen {
                if !fields.is_empty() {
                    c.expect(&Token::Comma)?;
                }
                fields.push(c.field_ref()?);
            }
            if fields.len() != n {
                return c.error(format!(
                    "{} takes {n} arguments, not {}",
                    func.name(),
                    fields.len()
                ));
            }
            Args::Fields(fields)
        }
        Shape::Ints(min, max) => {
            let mut ints = Vec::new();
            while c.peek() != &Token::RParen {
                if !ints.is_empty() {
                    c.expect(&Token::Comma)?;
                }
                ints.push(c.expect_small_int(u64::from(u32::MAX))?);
            }
            if ints.len() < min || ints.len() > max {
                return c.error(format!("{} takes {min} to {max} integers", func.name()));
            }
            Args::Ints(ints)
        }
        Shape::KeyValues => {
            let pos = c.pos();
            let pairs = parse_key_values(c)?;
            if func == Func::Log {
                check_log_args(&pairs).map_err(|message| SyntaxError { pos, message })?;
            }
            Args::KeyValues(pairs)
        }
        Shape::Weighted => {
            let mut items = Vec::new();
            // Commas separate members; a trailing one is allowed.
            while c.peek() != &Token::RParen {
                let value = c.expect_small_int(65535)?;
                let weight = if c.eat(&Token::Equals) {
                    let pos = c.pos();
                    let w = c.expect_small_int(65535)?;
                    if w == 0 {
                        return Err(SyntaxError {
                            pos,
                            message: "select weights run from 1 to 65535".into(),
                        });
                    }
                    Some(w)
                } else {
                    None
                };
                items.push((value, weight));
                if !c.eat(&Token::Comma) {
                    break;
                }
            }
            if items.len() < 2 {
                return c.error("select needs at least two values");
            }
            Args::Weighted(items)
        }
        Shape::StringField => {
            let s = c.expect_string()?;
            c.expect(&Token::Comma)?;
            Args::StringField(s, c.field_ref()?)
        }
    };
    c.expect(&Token::RParen)?;
    Ok(Action::Call { result, func, args })
}

/// `log(name=…, severity=…, verdict=…, meter=…)`, as lib/actions.c reads it.
fn check_log_args(pairs: &[(String, ArgValue)]) -> Result<(), String> {
    let mut verdict = false;
    for (key, value) in pairs {
        match (key.as_str(), value) {
            ("name" | "meter", ArgValue::Str(_)) => {}
            ("severity", ArgValue::Id(s))
                if ["alert", "warning", "notice", "info", "debug"].contains(&s.as_str()) => {}
            ("verdict", ArgValue::Id(v)) if ["allow", "drop", "reject"].contains(&v.as_str()) => {
                verdict = true
            }
            ("name" | "meter", _) => return Err(format!("log: {key} takes a quoted string")),
            ("severity", _) => {
                return Err("log: severity is alert, warning, notice, info or debug".into())
            }
            ("verdict", _) => return Err("log: verdict is allow, drop or reject".into()),
            _ => {
                return Err(format!(
                    "log takes name, severity, verdict and meter, not {key}"
                ))
            }
        }
    }
    if !verdict {
        return Err("log needs a verdict (allow, drop or reject)".into());
    }
    Ok(())
}

fn empty_args(shape: Shape) -> Args {
    match shape {
        Shape::KeyValues => Args::KeyValues(Vec::new()),
        _ => Args::Fields(Vec::new()),
    }
}

fn parse_key_values(c: &mut Cursor) -> Result<Vec<(String, ArgValue)>, SyntaxError> {
    let mut pairs = Vec::new();
    while c.peek() != &Token::RParen {
        if !pairs.is_empty() {
            c.expect(&Token::Comma)?;
        }
        let key = c.expect_id()?;
        c.expect(&Token::Equals)?;
        let first = parse_arg_value(c)?;
        // Further values without a key of their own continue a list.
        let mut list = vec![first];
        while c.peek() == &Token::Comma
            && !matches!((c.peek2(), c.peek()), (Token::Id(_), _))
            && c.peek2() != &Token::RParen
        {
            c.advance();
            list.push(parse_arg_value(c)?);
        }
        let value = if list.len() == 1 {
            list.remove(0)
        } else {
            ArgValue::List(list)
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn parse_arg_value(c: &mut Cursor) -> Result<ArgValue, SyntaxError> {
    let v = match c.peek().clone() {
        Token::Int(k) => ArgValue::Int(k),
        Token::Str(s) => ArgValue::Str(s),
        Token::Id(_) => return Ok(ArgValue::Id(c.field_ref()?.to_string())),
        Token::LCurly => {
            c.advance();
            let mut items = Vec::new();
            while !c.eat(&Token::RCurly) {
                items.push(parse_arg_value(c)?);
                c.eat(&Token::Comma);
            }
            return Ok(ArgValue::Set(items));
        }
        _ => return c.error("expecting a value"),
    };
    c.advance();
    Ok(v)
}

fn parse_nat(c: &mut Cursor, kind: Nat) -> Result<Action, SyntaxError> {
    if !c.eat(&Token::LParen) {
        return Ok(Action::Nat {
            kind,
            target: None,
            ports: None,
        });
    }
    let ip = c.expect_int()?;
    if !matches!(ip.format, Format::Ipv4 | Format::Ipv6) || ip.mask.is_some() {
        return c.error(format!("{} needs an IP address", kind.name()));
    }
    let ports = if c.eat(&Token::Comma) {
        let low = c.expect_small_int(65535)? as u16;
        if low == 0 {
            return c.error("a port range cannot start at 0");
        }
        let high = if c.eat(&Token::Hyphen) {
            let high = c.expect_small_int(65535)? as u16;
            if high <= low {
                return c.error(format!("port range {low}-{high} must rise"));
            }
            Some(high)
        } else {
            None
        };
        Some((low, high))
    } else {
        None
    };
    c.expect(&Token::RParen)?;
    Ok(Action::Nat {
        kind,
        target: Some(ip),
        ports,
    })
}

fn parse_ct_commit_args(c: &mut Cursor) -> Result<Action, SyntaxError> {
    c.expect(&Token::LParen)?;
    let mut pairs = Vec::new();
    while c.peek() != &Token::RParen {
        if !pairs.is_empty() {
            c.expect(&Token::Comma)?;
        }
        let key = c.expect_id()?;
        if key != "ct_mark" && key != "ct_label" {
            return c.error(format!("ct_commit sets ct_mark and ct_label, not {key}"));
        }
        c.expect(&Token::Equals)?;
        pairs.push((key, c.expect_int()?));
    }
    c.expect(&Token::RParen)?;
    Ok(Action::CtCommitArgs(pairs))
}

fn parse_ct_lb(c: &mut Cursor, mark: bool) -> Result<Action, SyntaxError> {
    let mut lb = CtLb {
        mark,
        backends: None,
        hash_fields: None,
        flags: Vec::new(),
    };
    // `ct_lb` and `ct_lb()` are the same bare action.
    if !c.eat(&Token::LParen) || c.eat(&Token::RParen) {
        return Ok(Action::CtLb(lb));
    }
    // `backends=` may be left out in the oldest form.
    if matches!(c.peek(), Token::Id(s) if s == "backends") {
        c.advance();
        c.expect(&Token::Equals)?;
    }
    let mut backends = Vec::new();
    loop {
        backends.push(parse_backend(c)?);
        // A trailing comma before `;` or `)` is allowed.
        if !c.eat(&Token::Comma) || matches!(c.peek(), Token::Semicolon | Token::RParen) {
            break;
        }
    }
    lb.backends = Some(backends);
    while c.eat(&Token::Semicolon) {
        let key = c.expect_id()?;
        if key == "hash_fields" {
            c.expect(&Token::Equals)?;
            lb.hash_fields = Some(c.expect_string()?);
        } else if key == "skip_snat" || key == "force_snat" {
            lb.flags.push(key);
        } else {
            return c.error(format!(
                "ct_lb flags are skip_snat and force_snat, not {key}"
            ));
        }
    }
    c.expect(&Token::RParen)?;
    Ok(Action::CtLb(lb))
}

fn parse_backend(c: &mut Cursor) -> Result<Backend, SyntaxError> {
    let bracketed = c.eat(&Token::LSquare);
    let ip = c.expect_int()?;
    let want = if bracketed { Format::Ipv6 } else { ip.format };
    if ip.mask.is_some() || ip.format != want || !matches!(ip.format, Format::Ipv4 | Format::Ipv6) {
        return c.error("expecting a backend address (IP, IP:PORT or [IPv6]:PORT)");
    }
    if bracketed {
        c.expect(&Token::RSquare)?;
    }
    let port = if c.eat(&Token::Colon) {
        Some(c.expect_small_int(65535)? as u16)
    } else {
        None
    };
    if port.is_some() && ip.format == Format::Ipv6 && !bracketed {
        return c.error("an IPv6 backend with a port is written [IP]:PORT");
    }
    Ok(Backend { ip, port })
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a};")?;
        }
        Ok(())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Const(k) => write!(f, "{}", FormatConstant(k)),
            Source::Str(s) => f.write_str(&quote(s)),
            Source::Field(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for ArgValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[ArgValue]| -> fmt::Result {
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        match self {
            ArgValue::Int(k) => write!(f, "{}", FormatConstant(k)),
            ArgValue::Str(s) => f.write_str(&quote(s)),
            ArgValue::Id(s) => f.write_str(s),
            ArgValue::Set(items) => {
                f.write_str("{")?;
                join(f, items)?;
                f.write_str("}")
            }
            ArgValue::List(items) => join(f, items),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip.format, self.port) {
            (Format::Ipv6, Some(p)) => write!(f, "[{}]:{p}", FormatConstant(&self.ip)),
            (_, Some(p)) => write!(f, "{}:{p}", FormatConstant(&self.ip)),
            (_, None) => write!(f, "{}", FormatConstant(&self.ip)),
        }
    }
}

impl fmt::Display for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut item = |f: &mut fmt::Formatter<'_>, text: String| -> fmt::Result {
            f.write_str(sep)?;
            sep = ", ";
            f.write_str(&text)
        };
        match self {
            Args::Fields(fields) => fields.iter().try_for_each(|x| item(f, x.to_string())),
            Args::Ints(ints) => ints.iter().try_for_each(|x| item(f, x.to_string())),
            Args::KeyValues(pairs) => pairs
                .iter()
                .try_for_each(|(k, v)| item(f, format!("{k} = {v}"))),
            Args::Weighted(items) => items.iter().try_for_each(|(v, w)| match w {
                Some(w) => item(f, format!("{v}={w}")),
                None => item(f, v.to_string()),
            }),
            Args::StringField(s, field) => item(f, format!("{}, {field}", quote(s))),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Next {
                pipeline: None,
                table: None,
            } => f.write_str("next"),
            Action::Next {
                pipeline: None,
                table: Some(t),
            } => write!(f, "next({t})"),
            Action::Next { pipeline, table } => {
                f.write_str("next(")?;
                if let Some(p) = pipeline {
                    write!(f, "pipeline={p}")?;
                    if table.is_some() {
                        f.write_str(", ")?;
                    }
                }
                if let Some(t) = table {
                    write!(f, "table={t}")?;
                }
                f.write_str(")")
            }
            Action::Output => f.write_str("output"),
            Action::Drop => f.write_str("drop"),
            Action::Assign { dst, src } => write!(f, "{dst} = {src}"),
            Action::Exchange(a, b) => write!(f, "{a} <-> {b}"),
            Action::Decrement(x) => write!(f, "{x}--"),
            Action::Push(x) => write!(f, "push({x})"),
            Action::Pop(x) => write!(f, "pop({x})"),
            Action::Block { kind, body } if body.0.is_empty() => write!(f, "{} {{ }}", kind.name()),
            Action::Block { kind, body } => write!(f, "{} {{ {body} }}", kind.name()),
            Action::Bare(b) => f.write_str(b.name()),
            Action::Nat {
                kind, target: None, ..
            } => f.write_str(kind.name()),
            Action::Nat {
                kind,
                target: Some(ip),
                ports,
            } => {
                write!(f, "{}({}", kind.name(), FormatConstant(ip))?;
                match ports {
                    Some((low, Some(high))) => write!(f, ",{low}-{high}")?,
                    Some((low, None)) => write!(f, ",{low}")?,
                    None => {}
                }
                f.write_str(")")
            }
            Action::CtLb(lb) => {
                f.write_str(if lb.mark { "ct_lb_mark" } else { "ct_lb" })?;
                let Some(backends) = &lb.backends else {
                    return Ok(());
                };
                f.write_str("(backends=")?;
                for (i, b) in backends.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{b}")?;
                }
                if let Some(h) = &lb.hash_fields {
                    write!(f, "; hash_fields={}", quote(h))?;
                }
                for flag in &lb.flags {
                    write!(f, "; {flag}")?;
                }
                f.write_str(")")
            }
            Action::CtCommitArgs(pairs) => {
                f.write_str("ct_commit(")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={}", FormatConstant(v))?;
                }
                f.write_str(")")
            }
            Action::Call { result, func, args } => {
                if let Some(r) = result {
                    write!(f, "{r} = ")?;
                }
                write!(f, "{}({args})", func.name())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Actions {
        let a = parse_actions(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let back = a.to_string();
        assert_eq!(parse_actions(&back).as_ref(), Ok(&a), "{text} -> {back}");
        a
    }

    #[test]
    fn parses_core_actions() {
        let a = round_trip("eth.dst <-> eth.src; outport = inport; flags.loopback = 1; ip.ttl--; next(pipeline=egress, table=3); output;");
        assert_eq!(
            a.0[0],
            Action::Exchange(FieldRef::whole("eth.dst"), FieldRef::whole("eth.src"))
        );
        assert_eq!(
            a.0[1],
            Action::Assign {
                dst: FieldRef::whole("outport"),
                src: Source::Field(FieldRef::whole("inport"))
            }
        );
        assert_eq!(a.0[3], Action::Decrement(FieldRef::whole("ip.ttl")));
        assert_eq!(
            a.0[4],
            Action::Next {
                pipeline: Some(Pipeline::Egress),
                table: Some(3)
            }
        );
        assert_eq!(
            round_trip("next(10);").0[0],
            Action::Next {
                pipeline: None,
                table: Some(10)
            }
        );
        assert_eq!(round_trip("").0, vec![]);
        assert_eq!(round_trip("/* drop */").0, vec![]);
        let a = round_trip(
            "outport = \"_MC_flood\"; reg0[0..15] = 0x1f; xxreg0 = ip6.dst; push(reg0); pop(reg0);",
        );
        assert_eq!(
            a.0[0],
            Action::Assign {
                dst: FieldRef::whole("outport"),
                src: Source::Str("_MC_flood".into())
            }
        );
    }

    #[test]
    fn parses_blocks_and_conntrack() {
        let a = round_trip("ct_commit { ct_mark.blocked = 0; ct_label.label = reg3; }; next;");
        assert!(
            matches!(&a.0[0], Action::Block { kind: Block::CtCommit, body } if body.0.len() == 2)
        );
        round_trip("arp { eth.dst = ff:ff:ff:ff:ff:ff; arp.spa = reg1; arp.tpa = reg0; arp.op = 1; output; };");
        round_trip("clone { outport = \"stor-kube-master\"; output; }; outport = \"_MC_flood_l2\"; output;");
        round_trip("tcp_reset { eth.dst <-> eth.src; ip4.dst <-> ip4.src; outport = inport; flags.loopback = 1; output; };");
        round_trip("ct_commit; ct_commit_nat; ct_next; ct_clear; ct_snat_to_vip; next;");
        round_trip("ct_commit(ct_mark=1/1, ct_label=0x10);");
        let a = round_trip(
            "ct_dnat(10.0.0.5); ct_snat(fd00::1); ct_dnat_in_czone; ct_snat_in_czone(203.0.113.2);",
        );
        assert_eq!(a.0.len(), 4);
        let a = round_trip("ct_snat(203.0.113.2,1000-2000); ct_dnat(10.0.0.5,80);");
        assert_eq!(
            a.0[0],
            Action::Nat {
                kind: Nat::Snat,
                target: Some(Constant {
                    value: 0xcb00_7102,
                    mask: None,
                    format: Format::Ipv4
                }),
                ports: Some((1000, Some(2000)))
            }
        );
        let a = round_trip("ct_lb_mark(backends=192.168.2.3:22,10.0.0.4; hash_fields=\"ip_src,ip_dst\"; skip_snat);");
        let Action::CtLb(lb) = &a.0[0] else { panic!() };
        assert_eq!(lb.backends.as_ref().unwrap().len(), 2);
        assert_eq!(lb.backends.as_ref().unwrap()[0].port, Some(22));
        assert_eq!(lb.flags, ["skip_snat"]);
        round_trip("ct_lb_mark(backends=[fd00:6:2::a]:8080,[fd00::1]:80);");
        round_trip("ct_lb(10.0.0.1:80, 10.0.0.2:80);");
        round_trip("ct_lb_mark;");
        assert_eq!(
            parse_actions("ct_lb();").unwrap(),
            parse_actions("ct_lb;").unwrap()
        );
        round_trip("ct_lb_mark(backends=10.0.0.1:80, 10.0.0.2:80, ; force_snat);");
    }

    #[test]
    fn parses_controller_functions() {
        for text in [
            "get_arp(outport, reg0); next;",
            "put_arp(inport, arp.spa, arp.sha); next;",
            "reg9[2] = lookup_arp(inport, arp.spa, arp.sha); next;",
            "reg9[3] = lookup_arp_ip(inport, arp.spa);",
            "outport = get_fdb(eth.dst); next;",
            "reg0[6] = chk_lb_hairpin(); reg0[12] = chk_lb_hairpin_reply(); next;",
            "reg0[15] = check_in_port_sec(); next;",
            "reg8[0] = check_pkt_larger(1514);",
            "reg0[3] = dns_lookup();",
            "reg0[3] = put_dhcp_opts(offerip = 10.0.0.2, router = 10.0.0.1, netmask = 255.255.255.0, dns_server = {8.8.8.8, 7.7.7.7}, domain_name = \"ovn.org\", lease_time = 3600);",
            "reg0[5] = put_nd_ra_opts(addr_mode = \"slaac\", mtu = 1450, prefix = fd00:6:1::/64, slla = 00:00:00:06:00:01);",
            "log(name=\"acl1\", severity=info, verdict=drop, meter=\"acl-meter\");",
            "set_meter(1000); set_meter(1000, 100);",
            "trigger_event(event = \"empty_lb_backends\", meter = \"\", vip = \"10.0.0.10:80\", protocol = \"tcp\", load_balancer = \"uuid\");",
            "reg8[16..31] = select(1=20, 2=30, 3);",
            "handle_svc_check(inport);",
            "bind_vport(\"vip1\", inport);",
            "commit_ecmp_nh(ipv6 = false, proto = tcp);",
            "fwd_group(liveness=true, childports=\"p1\", \"p2\");",
            "handle_dhcpv6_reply; igmp;",
            "handle_bfd_msg();",
            "reg8[16..31] = select(1, 2, );",
        ] {
            round_trip(text);
        }
    }

    #[test]
    fn refuses_bad_actions_with_positions() {
        for (text, pos, what) in [
            ("frobnicate;", 0, "unknown action `frobnicate'"),
            ("next", 4, "expecting `;'"),
            ("next(table=300);", 11, "no larger than 255"),
            ("next(pipeline=sideways);", 14, "ingress or egress"),
            ("ct_lb_mark(backends=);", 20, "expecting an integer"),
            (
                "lookup_arp(inport, arp.spa, arp.sha);",
                10,
                "stores a result",
            ),
            ("reg0 = put_arp(inport, arp.spa, arp.sha);", 14, "no result"),
            ("get_arp(outport);", 15, "takes 2 arguments"),
            ("ct_dnat(10.0.0.0/8);", 18, "needs an IP"),
            ("ct_snat(10.0.0.1,2000-1000);", 26, "must rise"),
            ("ct_snat(10.0.0.1,0);", 18, "cannot start at 0"),
            ("clone { output; ", 16, "expecting `}'"),
            ("reg0 = ;", 7, "expecting a constant"),
            ("next; drop;", 0, "only action"),
            ("reg0[0..15] = select(1);", 22, "at least two"),
            ("reg0[0..15] = select(1=0, 2);", 23, "weights run from 1"),
            (
                "ct_lb_mark(backends=10.0.0.1; frob);",
                34,
                "skip_snat and force_snat",
            ),
            ("tcp_reset;", 9, "expecting `{'"),
            ("log(verdict=bogus);", 4, "verdict is allow"),
            ("log(name=\"x\");", 4, "needs a verdict"),
        ] {
            let e = parse_actions(text).unwrap_err();
            assert!(e.message.contains(what) && e.pos == pos, "{text}: {e}");
        }
        let deep = format!("{}output;{}", "clone { ".repeat(40), " };".repeat(40));
        assert!(parse_actions(&deep).unwrap_err().message.contains("nested"));
    }
}

#[cfg(test)]
mod corpus {
    use super::*;

    /// Every distinct actions string ovn-northd 23.03 wrote for the lab
    /// topologies (`testbeds/src/topologies.rs`).
    const LAB_ACTIONS: &str = include_str!("testdata/actions.txt");

    #[test]
    fn every_lab_action_parses_and_round_trips() {
        let mut n = 0;
        for text in LAB_ACTIONS.lines() {
            let a = parse_actions(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parse_actions(&a.to_string()).as_ref(), Ok(&a), "{text}");
            n += 1;
        }
        assert!(n > 200, "corpus has {n} actions");
    }
}
