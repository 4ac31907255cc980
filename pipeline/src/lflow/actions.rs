//! Actions of the logical-flow language (`man ovn-sb`, Logical_Flow `actions`, as of OVN 23.03), parsed into a typed program that formats back to text which parses to the same program.
//!
//! Parsing is purely syntactic: fields stay [`FieldRef`]s for the symbol
//! table to judge. Everything else ovn-controller checks while parsing is
//! checked here too — argument shapes, keywords, numeric ranges, `drop;`
//! standing alone, nesting depth — so a flow it would refuse is refused here,
//! with the byte offset of the offending token.
//!
//! Actions are grouped by how they are written, each group with one variant,
//! one parser and a name table: bare keywords ([`Simple`]), blocks of nested
//! actions ([`NestedKind`]), NAT ([`NatKind`]), load balancing ([`LbKind`]),
//! functions whose arguments are all fields ([`Func`]) and DHCP/RA option
//! lists ([`OptsKind`]). Actions with arguments of their own (`log`,
//! `sample`, …) share one `key = value` list reader.
//!
//! Where `man ovn-sb` and OVN's parser (lib/actions.c) disagree, this follows
//! the parser, since that decides what ovn-controller accepts: `log`'s
//! verdicts are `allow`, `drop` and `reject`; `sample`'s cookie is `$cookie`;
//! `tcp_reset` takes a block.

use super::cursor::{Cursor, FieldRef};
use super::lexer::{quote, Constant, Format, FormatConstant, SyntaxError, Token};
use crate::network::Pipeline;
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

/// Logical tables per pipeline in OVN 23.03 (`LOG_PIPELINE_LEN`); `next`
/// cannot go past the last.
pub const LOGICAL_TABLES: u8 = 29;

/// ovn-controller refuses a 32nd level of nested blocks
/// (`MAX_NESTED_ACTION_DEPTH`); refusing it here also bounds recursion.
const MAX_DEPTH: usize = 32;

/// Highest `set_queue` id (`QDISC_MAX_QUEUE_ID`).
const MAX_QUEUE_ID: u64 = 61440;

/// `log` names and event names travel to ovn-controller in 64-byte buffers
/// with a terminating NUL.
const MAX_NAME_LEN: usize = 63;

/// Most port-range hyphens one input may have (see [`lex`]); each costs a
/// re-lex, and real flows have at most one per NAT action.
const MAX_HYPHENS: usize = 64;

/// A parsed `actions` column. Empty means drop, and is how `drop;` parses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actions(pub Vec<Action>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An action that is just its name (`output`, `ct_next`, …).
    Simple(Simple),
    /// `next`, `next(N)`, `next(pipeline=P, table=N)`; `None` means the
    /// current pipeline and the table after the current one.
    Next {
        pipeline: Option<Pipeline>,
        table: Option<u8>,
    },
    /// `field = constant` (maybe masked) or `field = "string"`.
    Load { dst: FieldRef, value: Literal },
    /// `dst = src`.
    Move { dst: FieldRef, src: FieldRef },
    /// `a <-> b`.
    Exchange { a: FieldRef, b: FieldRef },
    /// `ip.ttl--`, the only decrement OVN has.
    DecTtl,
    /// `ct_commit;` or `ct_commit { ct_mark = …; … };`: the block sets
    /// fields of the committed conntrack entry, not of the packet.
    CtCommit(Actions),
    /// The older `ct_commit(ct_mark=V[/M], ct_label=V[/M])`.
    CtCommitV1 {
        mark: Option<Constant>,
        label: Option<Constant>,
    },
    /// `ct_dnat`, `ct_snat` and their `_in_czone` forms: bare to un-NAT, or
    /// with the address (and ports) to NAT to.
    CtNat {
        kind: NatKind,
        target: Option<NatTarget>,
    },
    /// `ct_lb` / `ct_lb_mark`: bare to follow an existing connection, or
    /// with backends to pick one.
    CtLb { kind: LbKind, args: Option<LbArgs> },
    /// `name { action; … }`: runs the block on a packet derived from this
    /// one (a copy, an ARP request, an ICMP error, …).
    Nested { kind: NestedKind, actions: Actions },
    /// `[R = ] func(field, …)`; `result` is present exactly when
    /// [`Func::returns`], and `args` has [`Func::arity`] fields.
    Call {
        result: Option<FieldRef>,
        func: Func,
        args: Vec<FieldRef>,
    },
    /// `R = check_pkt_larger(L)`.
    CheckPktLarger { dst: FieldRef, len: u16 },
    /// `R = select(id[=weight], …)`, at least two members.
    Select {
        dst: FieldRef,
        members: Vec<SelectMember>,
    },
    /// `R = put_dhcp_opts(name = value, …)` and its DHCPv6 and RA kin.
    PutOpts {
        dst: FieldRef,
        kind: OptsKind,
        options: Vec<Opt>,
    },
    /// `trigger_event(event = "…", name = value, …)`.
    TriggerEvent { event: String, options: Vec<Opt> },
    Log(Log),
    /// `set_meter(rate[, burst])`, in kbps.
    SetMeter { rate: u32, burst: Option<u32> },
    /// `set_queue(id)`.
    SetQueue(u16),
    /// `bind_vport("vport", parent)`.
    BindVport { vport: String, parent: FieldRef },
    /// `fwd_group([liveness=bool, ]childports="p1", "p2", …)`.
    FwdGroup {
        liveness: Option<bool>,
        child_ports: Vec<String>,
    },
    /// `commit_ecmp_nh(ipv6 = bool, proto = tcp|udp|sctp)`.
    CommitEcmpNh { ipv6: bool, proto: L4Proto },
    /// `commit_lb_aff(vip = "…", backend = "…"[, proto = …], timeout = N)`.
    CommitLbAff(LbAffinity),
    Sample(Sample),
}

/// A constant as an assignment or option writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Int(Constant),
    Str(String),
}

/// An option's value: one constant or a `{…}` set of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptValue {
    One(Literal),
    Set(Vec<Literal>),
}

/// `name = value` in `put_dhcp_opts(…)` and the like. Names are open-ended
/// (they come from the DHCP_Options table), so they are kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub name: String,
    pub value: OptValue,
}

/// Where `ct_dnat(…)` / `ct_snat(…)` translate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTarget {
    pub ip: IpAddr,
    pub ports: Option<PortRange>,
}

/// `low` or `low-high`; `low` is at least 1 and `high` above `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: Option<u16>,
}

/// An address and maybe a port: a load-balancer backend or VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

/// `backends=…[; hash_fields="…"][; flag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbArgs {
    /// At least one.
    pub backends: Vec<Endpoint>,
    /// OVS hash fields, comma-separated, as written.
    pub hash_fields: Option<String>,
    pub flag: Option<LbFlag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectMember {
    pub id: u16,
    /// 1 to 65535; OVN's default is 100.
    pub weight: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub name: Option<String>,
    pub verdict: Verdict,
    /// OVN's default is `info`.
    pub severity: Option<Severity>,
    pub meter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbAffinity {
    pub vip: Endpoint,
    pub backend: Endpoint,
    /// Present exactly when the VIP has a port.
    pub proto: Option<L4Proto>,
    /// Seconds.
    pub timeout: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Packets sampled out of 65535; at least 1.
    pub probability: u16,
    pub collector_set: Option<u32>,
    pub obs_domain: Option<u8>,
    pub obs_point: Option<ObsPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsPoint {
    Id(u32),
    /// `$cookie`: the first 32 bits of the logical flow's UUID.
    Cookie,
}

/// A closed set of words, each written as itself.
pub trait Keyword: Copy + 'static {
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

macro_rules! keywords {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl Keyword for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

keywords! {
    /// Actions written as just their name.
    Simple {
        Output = "output",
        CtNext = "ct_next",
        CtClear = "ct_clear",
        CtCommitNat = "ct_commit_nat",
        CtSnatToVip = "ct_snat_to_vip",
        Igmp = "igmp",
        HandleDhcpv6Reply = "handle_dhcpv6_reply",
    }
}

keywords! {
    /// Actions that run a block of actions on a packet derived from this one.
    NestedKind {
        Clone = "clone",
        Arp = "arp",
        NdNs = "nd_ns",
        NdNa = "nd_na",
        NdNaRouter = "nd_na_router",
        Icmp4 = "icmp4",
        Icmp4Error = "icmp4_error",
        Icmp6 = "icmp6",
        Icmp6Error = "icmp6_error",
        TcpReset = "tcp_reset",
        SctpAbort = "sctp_abort",
        Reject = "reject",
    }
}

keywords! {
    NatKind {
        Dnat = "ct_dnat",
        Snat = "ct_snat",
        /// In the zone shared by DNAT and SNAT (distributed routers).
        DnatInCzone = "ct_dnat_in_czone",
        SnatInCzone = "ct_snat_in_czone",
    }
}

keywords! {
    LbKind {
        /// Keeps the NAT flags in ct_label.
        CtLb = "ct_lb",
        /// Keeps the NAT flags in ct_mark.
        CtLbMark = "ct_lb_mark",
    }
}

keywords! {
    LbFlag {
        SkipSnat = "skip_snat",
        ForceSnat = "force_snat",
    }
}

keywords! {
    /// Functions whose arguments are all fields.
    Func {
        GetArp = "get_arp",
        PutArp = "put_arp",
        LookupArp = "lookup_arp",
        LookupArpIp = "lookup_arp_ip",
        GetNd = "get_nd",
        PutNd = "put_nd",
        LookupNd = "lookup_nd",
        LookupNdIp = "lookup_nd_ip",
        GetFdb = "get_fdb",
        PutFdb = "put_fdb",
        LookupFdb = "lookup_fdb",
        HandleSvcCheck = "handle_svc_check",
        HandleBfdMsg = "handle_bfd_msg",
        Push = "push",
        Pop = "pop",
        DnsLookup = "dns_lookup",
        ChkLbHairpin = "chk_lb_hairpin",
        ChkLbHairpinReply = "chk_lb_hairpin_reply",
        CheckInPortSec = "check_in_port_sec",
        CheckOutPortSec = "check_out_port_sec",
        ChkEcmpNh = "chk_ecmp_nh",
        ChkEcmpNhMac = "chk_ecmp_nh_mac",
        ChkLbAff = "chk_lb_aff",
    }
}

impl Func {
    /// How many fields it takes.
    pub fn arity(self) -> usize {
        use Func::*;
        match self {
            HandleBfdMsg | DnsLookup | ChkLbHairpin | ChkLbHairpinReply | CheckInPortSec
            | CheckOutPortSec | ChkEcmpNh | ChkEcmpNhMac | ChkLbAff => 0,
            GetFdb | HandleSvcCheck | Push | Pop => 1,
            GetArp | GetNd | LookupArpIp | LookupNdIp | PutFdb | LookupFdb => 2,
            PutArp | PutNd | LookupArp | LookupNd => 3,
        }
    }

    /// Whether it is written `R = func(…)`.
    pub fn returns(self) -> bool {
        use Func::*;
        !matches!(
            self,
            GetArp | PutArp | GetNd | PutNd | PutFdb | HandleSvcCheck | HandleBfdMsg | Push | Pop
        )
    }
}

keywords! {
    /// Functions that turn a request into a reply carrying these options.
    OptsKind {
        Dhcpv4 = "put_dhcp_opts",
        Dhcpv6 = "put_dhcpv6_opts",
        NdRa = "put_nd_ra_opts",
    }
}

keywords! {
    Verdict {
        Allow = "allow",
        Drop = "drop",
        Reject = "reject",
    }
}

keywords! {
    Severity {
        Alert = "alert",
        Warning = "warning",
        Notice = "notice",
        Info = "info",
        Debug = "debug",
    }
}

keywords! {
    L4Proto {
        Tcp = "tcp",
        Udp = "udp",
        Sctp = "sctp",
    }
}

impl Keyword for Pipeline {
    const ALL: &'static [Pipeline] = &[Pipeline::Ingress, Pipeline::Egress];

    fn name(self) -> &'static str {
        match self {
            Pipeline::Ingress => "ingress",
            Pipeline::Egress => "egress",
        }
    }
}

/// Parses an `actions` column.
pub fn parse_actions(input: &str) -> Result<Actions, SyntaxError> {
    let (c, hyphens) = lex(input)?;
    let mut p = Parser { c, hyphens };
    p.sequence(&Token::End, 0).map_err(|mut e| {
        if p.hyphens.contains(&e.pos) {
            // The token there was lexed as `!`; name it as written.
            e.message = e.message.replace("`!'", "`-'");
        }
        e
    })
}

/// The lexer has no token for a lone `-`, which actions use only in NAT port
/// ranges (`ct_snat(10.0.0.1,1024-2047)`). So each lone hyphen before a digit
/// is lexed as `!` instead: same width, so offsets hold, and meaningless
/// anywhere else in actions. The parser takes `!` as a range separator only
/// at the offsets returned. The lexer finds the hyphens itself (it fails at
/// each), so strings and comments keep theirs.
fn lex(input: &str) -> Result<(Cursor, Vec<usize>), SyntaxError> {
    let mut text = Cow::Borrowed(input);
    let mut hyphens = Vec::new();
    loop {
        match Cursor::new(&text) {
            Ok(c) => return Ok((c, hyphens)),
            Err(e) if hyphens.len() < MAX_HYPHENS && precedes_number(&text, e.pos) => {
                text.to_mut().replace_range(e.pos..e.pos + 1, "!");
                hyphens.push(e.pos);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `text` has a `-` at `pos` with a digit after it (spaces aside).
fn precedes_number(text: &str, pos: usize) -> bool {
    match text.as_bytes().get(pos..) {
        Some([b'-', rest @ ..]) => rest
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

fn fail<T>(pos: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        pos,
        message: message.into(),
    })
}

struct Parser {
    c: Cursor,
    /// Offsets of port-range hyphens, lexed as `!` (see [`lex`]).
    hyphens: Vec<usize>,
}

impl Parser {
    /// Actions up to and including `end`, each ending in `;`.
    fn sequence(&mut self, end: &Token, depth: usize) -> Result<Actions, SyntaxError> {
        if matches!(self.c.peek(), Token::Id(s) if s == "drop") && self.c.peek2() == &Token::Semicolon
        {
            self.c.advance();
            self.c.advance();
            if !self.c.eat(end) {
                return self.c.error("`drop;' must be the only action");
            }
            return Ok(Actions::default());
        }
        let mut actions = Vec::new();
        while !self.c.eat(end) {
            if self.c.peek() == &Token::End {
                return self.c.error(format!("expecting `{end}'"));
            }
            actions.push(self.action(depth)?);
            self.c.expect(&Token::Semicolon)?;
        }
        Ok(Actions(actions))
    }

    fn action(&mut self, depth: usize) -> Result<Action, SyntaxError> {
        let pos = self.c.pos();
        let Token::Id(name) = self.c.peek().clone() else {
            return self.c.error("expecting an action");
        };
        // As in OVN, anything that continues like an assignment is one, even
        // `next = 1`: field names are the symbol table's business.
        match self.c.peek2() {
            Token::Equals | Token::Exchange | Token::LSquare => return self.assignment(),
            Token::Decrement if name != "ip.ttl" => {
                return fail(pos, format!("only ip.ttl can be decremented, not `{name}'"))
            }
            _ => {}
        }
        self.c.advance();
        if let Some(simple) = Simple::from_name(&name) {
            return Ok(Action::Simple(simple));
        }
        if let Some(kind) = NestedKind::from_name(&name) {
            let actions = self.block(depth)?;
            return Ok(Action::Nested { kind, actions });
        }
        if let Some(kind) = NatKind::from_name(&name) {
            return self.ct_nat(kind);
        }
        if let Some(kind) = LbKind::from_name(&name) {
            return self.ct_lb(kind);
        }
        if let Some(func) = Func::from_name(&name).filter(|f| !f.returns()) {
            return self.call(None, func);
        }
        let c = &mut self.c;
        match name.as_str() {
            "ip.ttl" => c.expect(&Token::Decrement).map(|()| Action::DecTtl),
            "next" => next(c, pos),
            "ct_commit" => self.ct_commit(depth),
            "log" => log(c, pos),
            "set_meter" => set_meter(c),
            "set_queue" => parenthesized(c, |c| {
                Ok(Action::SetQueue(number(c, "a queue id", 0..=MAX_QUEUE_ID)? as u16))
            }),
            "trigger_event" => trigger_event(c, pos),
            "bind_vport" => parenthesized(c, |c| {
                let vport = c.expect_string()?;
                c.expect(&Token::Comma)?;
                let parent = c.field_ref()?;
                Ok(Action::BindVport { vport, parent })
            }),
            "fwd_group" => fwd_group(c, pos),
            "commit_ecmp_nh" => commit_ecmp_nh(c, pos),
            "commit_lb_aff" => commit_lb_aff(c, pos),
            "sample" => sample(c, pos),
            "drop" => fail(pos, "`drop;' must be the only action"),
            _ if stores_result(&name) => fail(
                pos,
                format!("`{name}' stores a result: write `R = {name}(…)'"),
            ),
            _ => fail(pos, format!("unknown action `{name}'")),
        }
    }

    /// `dst = …` or `a <-> b`.
    fn assignment(&mut self) -> Result<Action, SyntaxError> {
        let dst = self.c.field_ref()?;
        if self.c.eat(&Token::Exchange) {
            let b = self.c.field_ref()?;
            return Ok(Action::Exchange { a: dst, b });
        }
        if !self.c.eat(&Token::Equals) {
            return self.c.error("expecting `=' or `<->'");
        }
        match self.c.peek().clone() {
            Token::Int(_) | Token::Str(_) => Ok(Action::Load {
                dst,
                value: literal(&mut self.c)?,
            }),
            Token::Id(name) if self.c.peek2() == &Token::LParen => {
                let pos = self.c.pos();
                self.c.advance();
                self.function(dst, &name, pos)
            }
            Token::Id(_) => Ok(Action::Move {
                dst,
                src: self.c.field_ref()?,
            }),
            _ => self.c.error("expecting a constant, a field or a function call"),
        }
    }

    /// `dst = name(…)`, with `name` (at `pos`) already read.
    fn function(&mut self, dst: FieldRef, name: &str, pos: usize) -> Result<Action, SyntaxError> {
        if let Some(func) = Func::from_name(name) {
            if !func.returns() {
                return fail(pos, format!("`{name}' has no result to assign"));
            }
            return self.call(Some(dst), func);
        }
        let c = &mut self.c;
        if let Some(kind) = OptsKind::from_name(name) {
            let options = options(c)?;
            return Ok(Action::PutOpts { dst, kind, options });
        }
        match name {
            "select" => select(c, dst),
            "check_pkt_larger" => parenthesized(c, |c| {
                let len = number(c, "a packet length", 0..=u64::from(u16::MAX))? as u16;
                Ok(Action::CheckPktLarger { dst, len })
            }),
            _ => fail(pos, format!("unknown function `{name}'")),
        }
    }

    fn call(&mut self, result: Option<FieldRef>, func: Func) -> Result<Action, SyntaxError> {
        parenthesized(&mut self.c, |c| {
            let mut args = Vec::with_capacity(func.arity());
            for i in 0..func.arity() {
                if i > 0 {
                    c.expect(&Token::Comma)?;
                }
                args.push(c.field_ref()?);
            }
            Ok(Action::Call { result, func, args })
        })
    }

    /// `{ action; … }` one level below `depth`.
    fn block(&mut self, depth: usize) -> Result<Actions, SyntaxError> {
        self.c.expect(&Token::LCurly)?;
        if depth + 1 >= MAX_DEPTH {
            return self.c.error(format!(
                "actions nested more than {} levels deep",
                MAX_DEPTH - 1
            ));
        }
        self.sequence(&Token::RCurly, depth + 1)
    }

    fn ct_commit(&mut self, depth: usize) -> Result<Action, SyntaxError> {
        match self.c.peek() {
            Token::LCurly => Ok(Action::CtCommit(self.block(depth)?)),
            Token::LParen => {
                let (mut mark, mut label) = (None, None);
                keyed_args(&mut self.c, &["ct_mark", "ct_label"], |c, key| {
                    if key == "ct_mark" {
                        mark = Some(masked_int(c, 32)?);
                    } else {
                        label = Some(masked_int(c, 128)?);
                    }
                    Ok(())
                })?;
                Ok(Action::CtCommitV1 { mark, label })
            }
            _ => Ok(Action::CtCommit(Actions::default())),
        }
    }

    fn ct_nat(&mut self, kind: NatKind) -> Result<Action, SyntaxError> {
        if !self.c.eat(&Token::LParen) {
            return Ok(Action::CtNat { kind, target: None });
        }
        let ip = ip_address(&mut self.c)?;
        let ports = if self.c.eat(&Token::Comma) {
            let low = number(&mut self.c, "a port", 1..=u64::from(u16::MAX))? as u16;
            let high = if self.c.peek() == &Token::Not && self.hyphens.contains(&self.c.pos()) {
                self.c.advance();
                let above = u64::from(low) + 1..=u64::from(u16::MAX);
                Some(number(&mut self.c, "the range's last port", above)? as u16)
            } else {
                None
            };
            Some(PortRange { low, high })
        } else {
            None
        };
        self.c.expect(&Token::RParen)?;
        Ok(Action::CtNat {
            kind,
            target: Some(NatTarget { ip, ports }),
        })
    }

    fn ct_lb(&mut self, kind: LbKind) -> Result<Action, SyntaxError> {
        let c = &mut self.c;
        // `ct_lb()` is the bare form, as OVN reads it.
        if !c.eat(&Token::LParen) || c.eat(&Token::RParen) {
            return Ok(Action::CtLb { kind, args: None });
        }
        if !c.eat_id("backends") {
            return c.error("expecting backends=");
        }
        c.expect(&Token::Equals)?;
        let mut backends = Vec::new();
        loop {
            backends.push(backend(c)?);
            // A trailing comma is allowed, as OVN allows it.
            if !c.eat(&Token::Comma) || matches!(c.peek(), Token::Semicolon | Token::RParen) {
                break;
            }
        }
        let mut hash_fields = None;
        let mut more = c.eat(&Token::Semicolon);
        if more && c.eat_id("hash_fields") {
            c.expect(&Token::Equals)?;
            hash_fields = Some(c.expect_string()?);
            more = c.eat(&Token::Semicolon);
        }
        let flag = if more { Some(keyword(c)?) } else { None };
        c.expect(&Token::RParen)?;
        Ok(Action::CtLb {
            kind,
            args: Some(LbArgs {
                backends,
                hash_fields,
                flag,
            }),
        })
    }
}

/// Names written only as `R = name(…)`.
fn stores_result(name: &str) -> bool {
    Func::from_name(name).is_some_and(Func::returns)
        || OptsKind::from_name(name).is_some()
        || matches!(name, "select" | "check_pkt_larger")
}

/// `next` (already read, at `pos`) and its optional arguments.
fn next(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let table = |c: &mut Cursor| {
        let last = u64::from(LOGICAL_TABLES - 1);
        number(c, "a table number", 0..=last).map(|t| t as u8)
    };
    if c.peek() != &Token::LParen {
        return Ok(Action::Next {
            pipeline: None,
            table: None,
        });
    }
    if matches!(c.peek2(), Token::Int(_)) {
        return parenthesized(c, |c| {
            Ok(Action::Next {
                pipeline: None,
                table: Some(table(c)?),
            })
        });
    }
    let (mut pipeline, mut tbl) = (None, None);
    keyed_args(c, &["pipeline", "table"], |c, key| {
        if key == "pipeline" {
            pipeline = Some(keyword(c)?);
        } else {
            tbl = Some(table(c)?);
        }
        Ok(())
    })?;
    if pipeline.is_none() && tbl.is_none() {
        return fail(pos, "`next(…)' needs pipeline= or table=");
    }
    Ok(Action::Next {
        pipeline,
        table: tbl,
    })
}

fn log(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let (mut name, mut verdict, mut severity, mut meter) = (None, None, None, None);
    keyed_args(c, &["name", "verdict", "severity", "meter"], |c, key| {
        match key {
            "name" => name = Some(short_string(c)?),
            "verdict" => verdict = Some(keyword(c)?),
            "severity" => severity = Some(keyword(c)?),
            _ => meter = Some(c.expect_string()?),
        }
        Ok(())
    })?;
    let Some(verdict) = verdict else {
        return fail(pos, "`log' needs verdict=");
    };
    Ok(Action::Log(Log {
        name,
        verdict,
        severity,
        meter,
    }))
}

fn set_meter(c: &mut Cursor) -> Result<Action, SyntaxError> {
    let kbps = |c: &mut Cursor, min| number(c, "a rate in kbps", min..=u64::from(u32::MAX));
    parenthesized(c, |c| {
        let rate = kbps(c, 1)? as u32;
        let burst = if c.eat(&Token::Comma) {
            Some(kbps(c, 0)? as u32)
        } else {
            None
        };
        Ok(Action::SetMeter { rate, burst })
    })
}

fn trigger_event(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let mut options = options(c)?.into_iter();
    match options.next() {
        Some(Opt {
            name,
            value: OptValue::One(Literal::Str(event)),
        }) if name == "event" && event.len() <= MAX_NAME_LEN => Ok(Action::TriggerEvent {
            event,
            options: options.collect(),
        }),
        _ => fail(
            pos,
            format!(
                "`trigger_event' needs event = \"…\" (at most {MAX_NAME_LEN} bytes) first"
            ),
        ),
    }
}

fn fwd_group(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let (mut liveness, mut child_ports) = (None, Vec::new());
    keyed_args(c, &["liveness", "childports"], |c, key| {
        if key == "liveness" {
            liveness = Some(boolean(c)?);
            return Ok(());
        }
        // The ports follow one key, separated by the same commas as keys.
        child_ports.push(c.expect_string()?);
        while c.peek() == &Token::Comma && matches!(c.peek2(), Token::Str(_)) {
            c.advance();
            child_ports.push(c.expect_string()?);
        }
        Ok(())
    })?;
    if child_ports.is_empty() {
        return fail(pos, "`fwd_group' needs childports=");
    }
    Ok(Action::FwdGroup {
        liveness,
        child_ports,
    })
}

fn commit_ecmp_nh(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let (mut ipv6, mut proto) = (None, None);
    keyed_args(c, &["ipv6", "proto"], |c, key| {
        if key == "ipv6" {
            ipv6 = Some(boolean(c)?);
        } else {
            proto = Some(keyword(c)?);
        }
        Ok(())
    })?;
    match (ipv6, proto) {
        (Some(ipv6), Some(proto)) => Ok(Action::CommitEcmpNh { ipv6, proto }),
        _ => fail(pos, "`commit_ecmp_nh' needs ipv6= and proto="),
    }
}

fn commit_lb_aff(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let (mut vip, mut backend, mut proto, mut timeout) = (None, None, None, None);
    keyed_args(c, &["vip", "backend", "proto", "timeout"], |c, key| {
        match key {
            "vip" => vip = Some(endpoint_string(c)?),
            "backend" => backend = Some(endpoint_string(c)?),
            "proto" => proto = Some(keyword(c)?),
            _ => timeout = Some(number(c, "a timeout in seconds", 0..=u64::from(u16::MAX))? as u16),
        }
        Ok(())
    })?;
    let (Some(vip), Some(backend), Some(timeout)) = (vip, backend, timeout) else {
        return fail(pos, "`commit_lb_aff' needs vip=, backend= and timeout=");
    };
    if vip.port.is_some() != proto.is_some() {
        return fail(
            pos,
            "`commit_lb_aff' takes proto= exactly when the VIP has a port",
        );
    }
    Ok(Action::CommitLbAff(LbAffinity {
        vip,
        backend,
        proto,
        timeout,
    }))
}

fn sample(c: &mut Cursor, pos: usize) -> Result<Action, SyntaxError> {
    let u32_max = u64::from(u32::MAX);
    let mut s = Sample {
        probability: 0,
        collector_set: None,
        obs_domain: None,
        obs_point: None,
    };
    let keys = ["probability", "collector_set", "obs_domain", "obs_point"];
    keyed_args(c, &keys, |c, key| {
        match key {
            "probability" => {
                s.probability = number(c, "a probability", 1..=u64::from(u16::MAX))? as u16
            }
            "collector_set" => s.collector_set = Some(number(c, "a collector set", 0..=u32_max)? as u32),
            "obs_domain" => s.obs_domain = Some(number(c, "an observation domain", 0..=255)? as u8),
            _ if matches!(c.peek(), Token::AddrSet(s) if s == "cookie") => {
                c.advance();
                s.obs_point = Some(ObsPoint::Cookie);
            }
            _ => {
                let id = number(c, "an observation point or $cookie", 0..=u32_max)? as u32;
                s.obs_point = Some(ObsPoint::Id(id));
            }
        }
        Ok(())
    })?;
    if s.probability == 0 {
        return fail(pos, "`sample' needs probability=");
    }
    Ok(Action::Sample(s))
}

fn select(c: &mut Cursor, dst: FieldRef) -> Result<Action, SyntaxError> {
    let pos = c.pos();
    let members = list(c, &Token::LParen, &Token::RParen, |c| {
        let id = number(c, "a member id", 0..=u64::from(u16::MAX))? as u16;
        let weight = if c.eat(&Token::Equals) {
            Some(number(c, "a weight", 1..=u64::from(u16::MAX))? as u16)
        } else {
            None
        };
        Ok(SelectMember { id, weight })
    })?;
    if members.len() < 2 {
        return fail(pos, "`select' needs at least 2 members");
    }
    Ok(Action::Select { dst, members })
}

/// `(name = value, …)`.
fn options(c: &mut Cursor) -> Result<Vec<Opt>, SyntaxError> {
    list(c, &Token::LParen, &Token::RParen, |c| {
        let name = c.expect_id()?;
        c.expect(&Token::Equals)?;
        let value = if c.peek() == &Token::LCurly {
            let pos = c.pos();
            let set = list(c, &Token::LCurly, &Token::RCurly, literal)?;
            if set.is_empty() {
                return fail(pos, "expecting a constant in the set");
            }
            OptValue::Set(set)
        } else {
            OptValue::One(literal(c)?)
        };
        Ok(Opt { name, value })
    })
}

/// Reads `open item, item, … close`, allowing a trailing comma.
fn list<T>(
    c: &mut Cursor,
    open: &Token,
    close: &Token,
    mut item: impl FnMut(&mut Cursor) -> Result<T, SyntaxError>,
) -> Result<Vec<T>, SyntaxError> {
    c.expect(open)?;
    let mut items = Vec::new();
    while !c.eat(close) {
        items.push(item(c)?);
        if !c.eat(&Token::Comma) {
            c.expect(close)?;
            break;
        }
    }
    Ok(items)
}

/// Reads `(key = value, …)` in any order, each key one of `keys` and given
/// at most once; `value` reads the value of the key it is handed. Which keys
/// are required is the caller's to say.
fn keyed_args(
    c: &mut Cursor,
    keys: &[&'static str],
    mut value: impl FnMut(&mut Cursor, &'static str) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    let mut seen = Vec::new();
    list(c, &Token::LParen, &Token::RParen, |c| {
        let pos = c.pos();
        let name = c.expect_id()?;
        let Some(&key) = keys.iter().find(|k| **k == name) else {
            return fail(
                pos,
                format!("unknown argument `{name}', expecting {}", keys.join(", ")),
            );
        };
        if seen.contains(&key) {
            return fail(pos, format!("duplicate argument `{key}'"));
        }
        seen.push(key);
        c.expect(&Token::Equals)?;
        value(c, key)
    })?;
    Ok(())
}

/// `( … )` around what `inner` reads.
fn parenthesized<T>(
    c: &mut Cursor,
    inner: impl FnOnce(&mut Cursor) -> Result<T, SyntaxError>,
) -> Result<T, SyntaxError> {
    c.expect(&Token::LParen)?;
    let value = inner(c)?;
    c.expect(&Token::RParen)?;
    Ok(value)
}

/// A decimal integer in `range`; `what` names it in the error.
fn number(c: &mut Cursor, what: &str, range: RangeInclusive<u64>) -> Result<u64, SyntaxError> {
    let value = match c.peek() {
        Token::Int(k) if k.mask.is_none() && k.format == Format::Decimal => {
            u64::try_from(k.value).ok().filter(|v| range.contains(v))
        }
        _ => None,
    };
    match value {
        Some(v) => {
            c.advance();
            Ok(v)
        }
        None => c.error(format!(
            "expecting {what} ({} to {})",
            range.start(),
            range.end()
        )),
    }
}

/// An integer constant, maybe masked, that fits `width` bits.
fn masked_int(c: &mut Cursor, width: u32) -> Result<Constant, SyntaxError> {
    match c.peek() {
        Token::Int(k) if k.bits() <= width => {
            let k = *k;
            c.advance();
            Ok(k)
        }
        _ => c.error(format!("expecting an integer of at most {width} bits")),
    }
}

fn literal(c: &mut Cursor) -> Result<Literal, SyntaxError> {
    let value = match c.peek() {
        Token::Int(k) => Literal::Int(*k),
        Token::Str(s) => Literal::Str(s.clone()),
        _ => return c.error("expecting a constant"),
    };
    c.advance();
    Ok(value)
}

fn keyword<K: Keyword>(c: &mut Cursor) -> Result<K, SyntaxError> {
    let found = match c.peek() {
        Token::Id(s) => K::from_name(s),
        _ => None,
    };
    match found {
        Some(k) => {
            c.advance();
            Ok(k)
        }
        None => {
            let names: Vec<_> = K::ALL.iter().map(|k| k.name()).collect();
            c.error(format!("expecting one of {}", names.join(", ")))
        }
    }
}

/// `true` or `false`, bare or quoted (northd writes `liveness="true"`).
fn boolean(c: &mut Cursor) -> Result<bool, SyntaxError> {
    let value = match c.peek() {
        Token::Id(s) | Token::Str(s) if s == "true" => true,
        Token::Id(s) | Token::Str(s) if s == "false" => false,
        _ => return c.error("expecting true or false"),
    };
    c.advance();
    Ok(value)
}

/// A quoted string short enough for ovn-controller's buffers.
fn short_string(c: &mut Cursor) -> Result<String, SyntaxError> {
    let pos = c.pos();
    let s = c.expect_string()?;
    if s.len() > MAX_NAME_LEN {
        return fail(pos, format!("name longer than {MAX_NAME_LEN} bytes"));
    }
    Ok(s)
}

fn ip_of(k: &Constant) -> Option<IpAddr> {
    match (k.format, k.mask) {
        (Format::Ipv4, None) => u32::try_from(k.value)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        (Format::Ipv6, None) => Some(IpAddr::V6(Ipv6Addr::from(k.value))),
        _ => None,
    }
}

fn ip_address(c: &mut Cursor) -> Result<IpAddr, SyntaxError> {
    match c.peek() {
        Token::Int(k) => match ip_of(k) {
            Some(ip) => {
                c.advance();
                Ok(ip)
            }
            None => c.error("expecting an IPv4 or IPv6 address"),
        },
        _ => c.error("expecting an IPv4 or IPv6 address"),
    }
}

/// A `ct_lb` backend: `IP`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT`.
fn backend(c: &mut Cursor) -> Result<Endpoint, SyntaxError> {
    let bracketed = c.eat(&Token::LSquare);
    let ip = match c.peek() {
        Token::Int(k) => ip_of(k).filter(|ip| ip.is_ipv6() || !bracketed),
        _ => None,
    };
    let Some(ip) = ip else {
        return c.error(if bracketed {
            "expecting an IPv6 address"
        } else {
            "expecting a backend (IP, IPv4:PORT or [IPv6]:PORT)"
        });
    };
    c.advance();
    if bracketed {
        c.expect(&Token::RSquare)?;
    }
    if c.peek() != &Token::Colon {
        return Ok(Endpoint { ip, port: None });
    }
    if ip.is_ipv6() && !bracketed {
        return c.error("an IPv6 backend with a port is written [IP]:PORT");
    }
    c.advance();
    let port = number(c, "a port", 0..=u64::from(u16::MAX))? as u16;
    Ok(Endpoint {
        ip,
        port: Some(port),
    })
}

/// A quoted `IP`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT`.
fn endpoint_string(c: &mut Cursor) -> Result<Endpoint, SyntaxError> {
    let pos = c.pos();
    let s = c.expect_string()?;
    let endpoint = if let Ok(sa) = s.parse::<SocketAddr>() {
        Some(Endpoint {
            ip: sa.ip(),
            port: Some(sa.port()),
        })
    } else {
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        let ip = match bare {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => s.parse::<IpAddr>().ok(),
        };
        ip.map(|ip| Endpoint { ip, port: None })
    };
    match endpoint {
        Some(e) => Ok(e),
        None => fail(pos, format!("expecting \"IP[:PORT]\" or \"[IPv6]:PORT\", not {}", quote(&s))),
    }
}

/// Writes `items` separated by `sep`.
fn join<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    sep: &str,
    items: impl IntoIterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// `name(args)` with the present arguments.
fn call_text(f: &mut fmt::Formatter<'_>, name: &str, args: &[String]) -> fmt::Result {
    write!(f, "{name}(")?;
    join(f, ", ", args)?;
    f.write_str(")")
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("drop;");
        }
        join(f, " ", self.0.iter().map(|a| format!("{a};")))
    }
}

/// Actions as a nested block: `{ a; b; }`.
struct Block<'a>(&'a Actions);

impl fmt::Display for Block<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ {} }}", self.0)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(k) => write!(f, "{}", FormatConstant(k)),
            Literal::Str(s) => f.write_str(&quote(s)),
        }
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = ", self.name)?;
        match &self.value {
            OptValue::One(v) => write!(f, "{v}"),
            OptValue::Set(set) => {
                f.write_str("{")?;
                join(f, ", ", set)?;
                f.write_str("}")
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
            (ip, Some(port)) => write!(f, "{ip}:{port}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for SelectMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            Some(w) => write!(f, "{}={w}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Simple(s) => write!(f, "{s}"),
            Action::Next {
                pipeline: None,
                table: None,
            } => f.write_str("next"),
            Action::Next {
                pipeline: None,
                table: Some(t),
            } => write!(f, "next({t})"),
            Action::Next { pipeline, table } => {
                let args: Vec<_> = (pipeline.map(|p| format!("pipeline={p}")).into_iter())
                    .chain(table.map(|t| format!("table={t}")))
                    .collect();
                call_text(f, "next", &args)
            }
            Action::Load { dst, value } => write!(f, "{dst} = {value}"),
            Action::Move { dst, src } => write!(f, "{dst} = {src}"),
            Action::Exchange { a, b } => write!(f, "{a} <-> {b}"),
            Action::DecTtl => f.write_str("ip.ttl--"),
            Action::CtCommit(actions) if actions.0.is_empty() => f.write_str("ct_commit"),
            Action::CtCommit(actions) => write!(f, "ct_commit {}", Block(actions)),
            Action::CtCommitV1 { mark, label } => {
                let args: Vec<_> = (mark.map(|k| format!("ct_mark={}", FormatConstant(&k))))
                    .into_iter()
                    .chain(label.map(|k| format!("ct_label={}", FormatConstant(&k))))
                    .collect();
                call_text(f, "ct_commit", &args)
            }
            Action::CtNat { kind, target: None } => write!(f, "{kind}"),
            Action::CtNat {
                kind,
                target: Some(NatTarget { ip, ports }),
            } => {
                write!(f, "{kind}({ip}")?;
                match ports {
                    Some(PortRange {
                        low,
                        high: Some(high),
                    }) => write!(f, ",{low}-{high}")?,
                    Some(PortRange { low, high: None }) => write!(f, ",{low}")?,
                    None => {}
                }
                f.write_str(")")
            }
            Action::CtLb { kind, args: None } => write!(f, "{kind}"),
            Action::CtLb {
                kind,
                args: Some(lb),
            } => {
                write!(f, "{kind}(backends=")?;
                join(f, ",", &lb.backends)?;
                if let Some(h) = &lb.hash_fields {
                    write!(f, "; hash_fields={}", quote(h))?;
                }
                if let Some(flag) = lb.flag {
                    write!(f, "; {flag}")?;
                }
                f.write_str(")")
            }
            Action::Nested { kind, actions } => write!(f, "{kind} {}", Block(actions)),
            Action::Call { result, func, args } => {
                if let Some(r) = result {
                    write!(f, "{r} = ")?;
                }
                write!(f, "{func}(")?;
                join(f, ", ", args)?;
                f.write_str(")")
            }
            Action::CheckPktLarger { dst, len } => write!(f, "{dst} = check_pkt_larger({len})"),
            Action::Select { dst, members } => {
                write!(f, "{dst} = select(")?;
                join(f, ", ", members)?;
                f.write_str(")")
            }
            Action::PutOpts { dst, kind, options } => {
                write!(f, "{dst} = {kind}(")?;
                join(f, ", ", options)?;
                f.write_str(")")
            }
            Action::TriggerEvent { event, options } => {
                write!(f, "trigger_event(event = {}", quote(event))?;
                options.iter().try_for_each(|o| write!(f, ", {o}"))?;
                f.write_str(")")
            }
            Action::Log(log) => {
                let mut args = Vec::new();
                args.extend(log.name.as_deref().map(|n| format!("name={}", quote(n))));
                args.push(format!("verdict={}", log.verdict));
                args.extend(log.severity.map(|s| format!("severity={s}")));
                args.extend(log.meter.as_deref().map(|m| format!("meter={}", quote(m))));
                call_text(f, "log", &args)
            }
            Action::SetMeter { rate, burst: None } => write!(f, "set_meter({rate})"),
            Action::SetMeter {
                rate,
                burst: Some(burst),
            } => write!(f, "set_meter({rate}, {burst})"),
            Action::SetQueue(id) => write!(f, "set_queue({id})"),
            Action::BindVport { vport, parent } => {
                write!(f, "bind_vport({}, {parent})", quote(vport))
            }
            Action::FwdGroup {
                liveness,
                child_ports,
            } => {
                f.write_str("fwd_group(")?;
                if let Some(l) = liveness {
                    write!(f, "liveness={l}, ")?;
                }
                f.write_str("childports=")?;
                join(f, ", ", child_ports.iter().map(|p| quote(p)))?;
                f.write_str(")")
            }
            Action::CommitEcmpNh { ipv6, proto } => {
                write!(f, "commit_ecmp_nh(ipv6 = {ipv6}, proto = {proto})")
            }
            Action::CommitLbAff(aff) => {
                let mut args = vec![
                    format!("vip = {}", quote(&aff.vip.to_string())),
                    format!("backend = {}", quote(&aff.backend.to_string())),
                ];
                args.extend(aff.proto.map(|p| format!("proto = {p}")));
                args.push(format!("timeout = {}", aff.timeout));
                call_text(f, "commit_lb_aff", &args)
            }
            Action::Sample(s) => {
                let mut args = vec![format!("probability={}", s.probability)];
                args.extend(s.collector_set.map(|v| format!("collector_set={v}")));
                args.extend(s.obs_domain.map(|v| format!("obs_domain={v}")));
                args.extend(s.obs_point.map(|p| match p {
                    ObsPoint::Id(v) => format!("obs_point={v}"),
                    ObsPoint::Cookie => "obs_point=$cookie".to_string(),
                }));
                call_text(f, "sample", &args)
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
        let again = parse_actions(&back).unwrap_or_else(|e| panic!("{text} -> {back}: {e}"));
        assert_eq!(again, a, "{text} -> {back}");
        assert_eq!(again.to_string(), back, "formatting is not stable");
        a
    }

    fn field(text: &str) -> FieldRef {
        Cursor::new(text).and_then(|mut c| c.field_ref()).unwrap()
    }

    fn fields(texts: &[&str]) -> Vec<FieldRef> {
        texts.iter().map(|t| field(t)).collect()
    }

    fn int(value: u128) -> Constant {
        Constant::new(value, Format::Decimal)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nested(kind: NestedKind, actions: Vec<Action>) -> Action {
        Action::Nested {
            kind,
            actions: Actions(actions),
        }
    }

    fn call(result: Option<&str>, func: Func, args: &[&str]) -> Action {
        Action::Call {
            result: result.map(field),
            func,
            args: fields(args),
        }
    }

    fn opt(name: &str, value: OptValue) -> Opt {
        Opt {
            name: name.into(),
            value,
        }
    }

    fn one_str(s: &str) -> OptValue {
        OptValue::One(Literal::Str(s.into()))
    }

    const OUTPUT: Action = Action::Simple(Simple::Output);

    #[test]
    fn parses_each_action_to_its_tree() {
        let next = |pipeline, table| Action::Next { pipeline, table };
        let nat = |kind, target| Action::CtNat { kind, target };
        let endpoint = |ip_text: &str, port| Endpoint {
            ip: ip(ip_text),
            port,
        };
        let cases: Vec<(&str, Vec<Action>)> = vec![
            ("", vec![]),
            ("/* drop */", vec![]),
            ("drop;", vec![]),
            ("output; igmp;", vec![OUTPUT, Action::Simple(Simple::Igmp)]),
            (
                "ct_next; ct_clear; ct_commit_nat; ct_snat_to_vip; handle_dhcpv6_reply;",
                vec![
                    Action::Simple(Simple::CtNext),
                    Action::Simple(Simple::CtClear),
                    Action::Simple(Simple::CtCommitNat),
                    Action::Simple(Simple::CtSnatToVip),
                    Action::Simple(Simple::HandleDhcpv6Reply),
                ],
            ),
            (
                "next; next(3); next(pipeline=egress); next(table=3, pipeline=ingress);",
                vec![
                    next(None, None),
                    next(None, Some(3)),
                    next(Some(Pipeline::Egress), None),
                    next(Some(Pipeline::Ingress), Some(3)),
                ],
            ),
            (
                "reg0[1] = 1; vlan.pcp = 4/4; outport = \"p1\";",
                vec![
                    Action::Load {
                        dst: field("reg0[1]"),
                        value: Literal::Int(int(1)),
                    },
                    Action::Load {
                        dst: field("vlan.pcp"),
                        value: Literal::Int(Constant {
                            value: 4,
                            mask: Some(4),
                            format: Format::Decimal,
                        }),
                    },
                    Action::Load {
                        dst: field("outport"),
                        value: Literal::Str("p1".into()),
                    },
                ],
            ),
            (
                "reg0 = ip4.src; eth.dst <-> eth.src; ip.ttl--;",
                vec![
                    Action::Move {
                        dst: field("reg0"),
                        src: field("ip4.src"),
                    },
                    Action::Exchange {
                        a: field("eth.dst"),
                        b: field("eth.src"),
                    },
                    Action::DecTtl,
                ],
            ),
            (
                "ct_commit; ct_commit { }; ct_commit { drop; }; ct_commit { ct_mark.blocked = 1; };",
                vec![
                    Action::CtCommit(Actions::default()),
                    Action::CtCommit(Actions::default()),
                    Action::CtCommit(Actions::default()),
                    Action::CtCommit(Actions(vec![Action::Load {
                        dst: field("ct_mark.blocked"),
                        value: Literal::Int(int(1)),
                    }])),
                ],
            ),
            (
                "ct_commit(ct_label=0x10, ct_mark=1/1); ct_commit();",
                vec![
                    Action::CtCommitV1 {
                        mark: Some(Constant {
                            value: 1,
                            mask: Some(1),
                            format: Format::Decimal,
                        }),
                        label: Some(Constant::new(16, Format::Hex)),
                    },
                    Action::CtCommitV1 {
                        mark: None,
                        label: None,
                    },
                ],
            ),
            (
                "ct_dnat; ct_snat(192.168.1.2, 1-3000); ct_dnat_in_czone(fd11::2); ct_snat_in_czone(10.0.0.1,80);",
                vec![
                    nat(NatKind::Dnat, None),
                    nat(
                        NatKind::Snat,
                        Some(NatTarget {
                            ip: ip("192.168.1.2"),
                            ports: Some(PortRange {
                                low: 1,
                                high: Some(3000),
                            }),
                        }),
                    ),
                    nat(
                        NatKind::DnatInCzone,
                        Some(NatTarget {
                            ip: ip("fd11::2"),
                            ports: None,
                        }),
                    ),
                    nat(
                        NatKind::SnatInCzone,
                        Some(NatTarget {
                            ip: ip("10.0.0.1"),
                            ports: Some(PortRange {
                                low: 80,
                                high: None,
                            }),
                        }),
                    ),
                ],
            ),
            (
                "ct_lb; ct_lb_mark(); ct_lb_mark(backends=192.168.2.3:22);",
                vec![
                    Action::CtLb {
                        kind: LbKind::CtLb,
                        args: None,
                    },
                    Action::CtLb {
                        kind: LbKind::CtLbMark,
                        args: None,
                    },
                    Action::CtLb {
                        kind: LbKind::CtLbMark,
                        args: Some(LbArgs {
                            backends: vec![endpoint("192.168.2.3", Some(22))],
                            hash_fields: None,
                            flag: None,
                        }),
                    },
                ],
            ),
            (
                "ct_lb(backends=[fd00::2]:80, fd00::3, 10.0.0.1,; hash_fields=\"ip_src,ip_dst\"; force_snat);",
                vec![Action::CtLb {
                    kind: LbKind::CtLb,
                    args: Some(LbArgs {
                        backends: vec![
                            endpoint("fd00::2", Some(80)),
                            endpoint("fd00::3", None),
                            endpoint("10.0.0.1", None),
                        ],
                        hash_fields: Some("ip_src,ip_dst".into()),
                        flag: Some(LbFlag::ForceSnat),
                    }),
                }],
            ),
            (
                "clone { output; }; arp { drop; }; icmp6_error { next; };",
                vec![
                    nested(NestedKind::Clone, vec![OUTPUT]),
                    nested(NestedKind::Arp, vec![]),
                    nested(NestedKind::Icmp6Error, vec![next(None, None)]),
                ],
            ),
            (
                "get_arp(outport, reg0); put_nd(inport, nd.target, nd.tll); push(xxreg1[10..20]); pop(reg0); handle_svc_check(inport); handle_bfd_msg();",
                vec![
                    call(None, Func::GetArp, &["outport", "reg0"]),
                    call(None, Func::PutNd, &["inport", "nd.target", "nd.tll"]),
                    call(None, Func::Push, &["xxreg1[10..20]"]),
                    call(None, Func::Pop, &["reg0"]),
                    call(None, Func::HandleSvcCheck, &["inport"]),
                    call(None, Func::HandleBfdMsg, &[]),
                ],
            ),
            (
                "reg9[2] = lookup_arp(inport, arp.spa, arp.sha); outport = get_fdb(eth.dst); reg0[6] = chk_lb_hairpin(); reg0[0] = lookup_nd_ip(inport, ip6.src);",
                vec![
                    call(
                        Some("reg9[2]"),
                        Func::LookupArp,
                        &["inport", "arp.spa", "arp.sha"],
                    ),
                    call(Some("outport"), Func::GetFdb, &["eth.dst"]),
                    call(Some("reg0[6]"), Func::ChkLbHairpin, &[]),
                    call(Some("reg0[0]"), Func::LookupNdIp, &["inport", "ip6.src"]),
                ],
            ),
            (
                "reg0[6] = check_pkt_larger(1514); reg8[16..31] = select(1=20, 2,);",
                vec![
                    Action::CheckPktLarger {
                        dst: field("reg0[6]"),
                        len: 1514,
                    },
                    Action::Select {
                        dst: field("reg8[16..31]"),
                        members: vec![
                            SelectMember {
                                id: 1,
                                weight: Some(20),
                            },
                            SelectMember {
                                id: 2,
                                weight: None,
                            },
                        ],
                    },
                ],
            ),
            (
                "reg0[3] = put_dhcp_opts(offerip = 10.0.0.2, dns_server = {8.8.8.8, 7.7.7.7}, domain_name = \"ovn.org\");",
                vec![Action::PutOpts {
                    dst: field("reg0[3]"),
                    kind: OptsKind::Dhcpv4,
                    options: vec![
                        opt(
                            "offerip",
                            OptValue::One(Literal::Int(Constant::new(0x0a000002, Format::Ipv4))),
                        ),
                        opt(
                            "dns_server",
                            OptValue::Set(vec![
                                Literal::Int(Constant::new(0x08080808, Format::Ipv4)),
                                Literal::Int(Constant::new(0x07070707, Format::Ipv4)),
                            ]),
                        ),
                        opt("domain_name", one_str("ovn.org")),
                    ],
                }],
            ),
            (
                "reg1[0] = put_dhcpv6_opts(); trigger_event(event = \"empty_lb_backends\", vip = \"10.0.0.1:80\");",
                vec![
                    Action::PutOpts {
                        dst: field("reg1[0]"),
                        kind: OptsKind::Dhcpv6,
                        options: vec![],
                    },
                    Action::TriggerEvent {
                        event: "empty_lb_backends".into(),
                        options: vec![opt("vip", one_str("10.0.0.1:80"))],
                    },
                ],
            ),
            (
                "log(severity=alert, name=\"acl\", verdict=drop, meter=\"m\"); log(verdict=allow);",
                vec![
                    Action::Log(Log {
                        name: Some("acl".into()),
                        verdict: Verdict::Drop,
                        severity: Some(Severity::Alert),
                        meter: Some("m".into()),
                    }),
                    Action::Log(Log {
                        name: None,
                        verdict: Verdict::Allow,
                        severity: None,
                        meter: None,
                    }),
                ],
            ),
            (
                "set_meter(100, 1000); set_meter(4294967295); set_queue(61440); bind_vport(\"vip\", inport);",
                vec![
                    Action::SetMeter {
                        rate: 100,
                        burst: Some(1000),
                    },
                    Action::SetMeter {
                        rate: u32::MAX,
                        burst: None,
                    },
                    Action::SetQueue(61440),
                    Action::BindVport {
                        vport: "vip".into(),
                        parent: field("inport"),
                    },
                ],
            ),
            (
                "fwd_group(liveness=\"true\",childports=\"p1\",\"p2\"); fwd_group(childports=\"p3\");",
                vec![
                    Action::FwdGroup {
                        liveness: Some(true),
                        child_ports: vec!["p1".into(), "p2".into()],
                    },
                    Action::FwdGroup {
                        liveness: None,
                        child_ports: vec!["p3".into()],
                    },
                ],
            ),
            (
                "commit_ecmp_nh(ipv6 = false, proto = sctp);",
                vec![Action::CommitEcmpNh {
                    ipv6: false,
                    proto: L4Proto::Sctp,
                }],
            ),
            (
                "commit_lb_aff(vip = \"[::1]:8080\", backend = \"[::2]:8080\", proto = tcp, timeout = 30); commit_lb_aff(vip = \"172.16.0.123\", backend = \"10.0.0.3\", timeout = 30);",
                vec![
                    Action::CommitLbAff(LbAffinity {
                        vip: endpoint("::1", Some(8080)),
                        backend: endpoint("::2", Some(8080)),
                        proto: Some(L4Proto::Tcp),
                        timeout: 30,
                    }),
                    Action::CommitLbAff(LbAffinity {
                        vip: endpoint("172.16.0.123", None),
                        backend: endpoint("10.0.0.3", None),
                        proto: None,
                        timeout: 30,
                    }),
                ],
            ),
            (
                "sample(probability=100, obs_point=$cookie); sample(probability=1,collector_set=200,obs_domain=10,obs_point=1000);",
                vec![
                    Action::Sample(Sample {
                        probability: 100,
                        collector_set: None,
                        obs_domain: None,
                        obs_point: Some(ObsPoint::Cookie),
                    }),
                    Action::Sample(Sample {
                        probability: 1,
                        collector_set: Some(200),
                        obs_domain: Some(10),
                        obs_point: Some(ObsPoint::Id(1000)),
                    }),
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(round_trip(text).0, expected, "{text}");
        }
    }

    #[test]
    fn formats_as_ovn_does() {
        for (text, formatted) in [
            ("", "drop;"),
            ("next(table=3);", "next(3);"),
            ("arp { };", "arp { drop; };"),
            ("ct_commit { };", "ct_commit;"),
            ("reg0=reg1;outport=\"a\\\"b\";", "reg0 = reg1; outport = \"a\\\"b\";"),
            (
                "ct_dnat(192.168.1.2, 1000 - 2000);",
                "ct_dnat(192.168.1.2,1000-2000);",
            ),
            (
                "ct_lb(backends=192.168.1.2:80, [fd0f::2]:8080; skip_snat);",
                "ct_lb(backends=192.168.1.2:80,[fd0f::2]:8080; skip_snat);",
            ),
            (
                "reg1[0] = put_dhcpv6_opts(dns_server={ae70::1,ae70::2});",
                "reg1[0] = put_dhcpv6_opts(dns_server = {ae70::1, ae70::2});",
            ),
        ] {
            assert_eq!(round_trip(text).to_string(), formatted, "{text}");
        }
    }

    #[test]
    fn refuses_bad_actions_with_positions() {
        for (text, pos, what) in [
            ("frobnicate;", 0, "unknown action `frobnicate'"),
            ("next", 4, "expecting `;'"),
            ("next; drop;", 6, "only action"),
            ("drop; next;", 6, "only action"),
            ("next(table=99999);", 11, "expecting a table number (0 to 28)"),
            ("next(29);", 5, "table number"),
            ("next();", 0, "needs pipeline= or table="),
            ("next(pipeline=sideways);", 14, "one of ingress, egress"),
            ("next(table=1, table=2);", 14, "duplicate argument `table'"),
            ("next(stage=1);", 5, "unknown argument `stage'"),
            ("reg0--;", 0, "only ip.ttl"),
            ("ip.ttl;", 6, "expecting `--'"),
            ("reg0 = ;", 7, "expecting a constant, a field"),
            ("reg0 == 1;", 5, "expecting `=' or `<->'"),
            ("reg0 = {1, 2};", 7, "expecting a constant"),
            ("ct_lb_mark(backends=);", 20, "expecting a backend"),
            ("ct_lb(10.0.0.1:80);", 6, "expecting backends="),
            ("ct_lb(backends=[10.0.0.1]:80);", 16, "expecting an IPv6"),
            ("ct_lb(backends=10.0.0.1:65536);", 24, "port"),
            ("ct_lb(backends=10.0.0.1; frob);", 25, "one of skip_snat"),
            ("ct_dnat();", 8, "IPv4 or IPv6"),
            ("ct_dnat(10.0.0.0/8);", 8, "IPv4 or IPv6"),
            ("ct_snat(192.168.1.2, 192.168.1.3);", 21, "expecting a port"),
            ("ct_snat(192.168.1.2, 0);", 21, "expecting a port (1 to"),
            ("ct_dnat(192.168.1.2, 1000-100);", 26, "(1001 to 65535)"),
            ("ct_dnat(192.168.1.2, 1000-foo);", 25, "`-' is only valid"),
            ("reg0 = 1-2;", 8, "expecting `;', found `-'"),
            ("ct_commit(ct_mark=0x100000000);", 18, "at most 32 bits"),
            ("ct_commit(ct_zone=1);", 10, "unknown argument"),
            ("clone { output; ", 16, "expecting `}'"),
            ("clone output;", 6, "expecting `{'"),
            ("tcp_reset;", 9, "expecting `{'"),
            ("lookup_arp(inport, arp.spa, arp.sha);", 0, "stores a result"),
            ("select(1, 2);", 0, "stores a result"),
            ("reg0 = get_arp(inport, ip4.dst);", 7, "no result"),
            ("reg0 = frob(1);", 7, "unknown function `frob'"),
            ("get_arp(inport);", 14, "expecting `,'"),
            ("get_arp;", 7, "expecting `('"),
            ("reg0[0] = chk_lb_hairpin(foo);", 25, "expecting `)'"),
            ("reg0[0] = check_pkt_larger(foo);", 27, "packet length"),
            ("reg0 = select(1);", 13, "at least 2 members"),
            ("reg0 = select(1=0, 2);", 16, "weight (1 to 65535)"),
            ("reg0 = select(0x1, 2);", 14, "member id"),
            ("reg1[0] = put_dhcp_opts(offerip=1.2.3.4, \"hi\");", 41, "expecting a name"),
            ("reg1[0] = put_nd_ra_opts(addr_mode = slaac);", 37, "expecting a constant"),
            ("reg1[0] = put_dhcp_opts(dns_server = {});", 37, "constant in the set"),
            ("log;", 3, "expecting `('"),
            ("log(severity=info);", 0, "needs verdict="),
            ("log(verdict=deny);", 12, "one of allow, drop, reject"),
            ("log(verdict=drop, severity=loud);", 27, "one of alert"),
            ("log(verdict=drop, name=acl);", 23, "quoted string"),
            ("set_queue(61441);", 10, "queue id (0 to 61440)"),
            ("set_meter(0);", 10, "rate in kbps (1 to"),
            ("set_meter(100, 1000, );", 19, "expecting `)'"),
            ("trigger_event(vip = \"1.2.3.4\");", 0, "needs event"),
            ("bind_vport(inport, inport);", 11, "quoted string"),
            ("fwd_group();", 0, "needs childports="),
            ("fwd_group(childports=eth0);", 21, "quoted string"),
            ("fwd_group(liveness=xyzzy, childports=\"p\");", 19, "true or false"),
            ("commit_ecmp_nh(proto = sctp);", 0, "needs ipv6= and proto="),
            (
                "commit_lb_aff(vip = \"1.2.3.4:80\", backend = \"5.6.7.8:80\", timeout = 30);",
                0,
                "proto= exactly when",
            ),
            ("commit_lb_aff(vip = \"nowhere\", backend = \"5.6.7.8\", timeout = 1);", 20, "IP[:PORT]"),
            ("sample(probability=0);", 19, "probability (1 to"),
            ("sample(obs_domain=300, probability=1);", 18, "observation domain (0 to 255)"),
            ("sample(probability=1, obs_point=foo);", 32, "$cookie"),
            ("sample(collector_set=1);", 0, "needs probability="),
            ("outport = \"x", 10, "inside quoted string"),
            (";", 0, "expecting an action"),
        ] {
            let e = parse_actions(text).expect_err(text);
            assert!(e.message.contains(what) && e.pos == pos, "{text}: {e}");
        }
    }

    #[test]
    fn bounds_nesting_as_ovn_does() {
        let nest = |n: usize| format!("{}output;{}", "clone { ".repeat(n), " };".repeat(n));
        assert!(parse_actions(&nest(MAX_DEPTH - 1)).is_ok());
        let e = parse_actions(&nest(MAX_DEPTH)).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        assert!(parse_actions(&nest(10_000)).is_err());
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let samples = [
            "ct_lb_mark(backends=[fd00::2]:80,10.0.0.1:8; hash_fields=\"ip_src\"; skip_snat);",
            "reg0[3] = put_dhcp_opts(offerip = 10.0.0.2, dns_server = {8.8.8.8, 7.7.7.7});",
            "commit_lb_aff(vip = \"[::1]:8080\", backend = \"[::2]:8080\", proto = tcp, timeout = 30);",
            "ct_snat_in_czone(10.0.0.1,100-200); sample(probability=1,obs_point=$cookie);",
            "fwd_group(liveness=true,childports=\"a\",\"b\"); log(name=\"n\",verdict=drop);",
            "- -1 --1 1- !1 1 - - 2 ct_dnat(1.2.3.4,1-2-3)",
        ];
        for text in samples.iter().copied().chain(corpus::LAB_ACTIONS.lines()) {
            for (i, _) in text.char_indices() {
                let _ = parse_actions(&text[..i]);
                let _ = parse_actions(&text[i..]);
            }
        }
    }
}

#[cfg(test)]
mod corpus {
    use super::*;

    /// Every distinct actions string ovn-northd 23.03 wrote for the lab
    /// topologies (`testbeds/src/topologies.rs`).
    pub(super) const LAB_ACTIONS: &str = include_str!("testdata/actions.txt");

    #[test]
    fn every_lab_action_parses_and_round_trips() {
        let mut n = 0;
        for text in LAB_ACTIONS.lines() {
            let a = parse_actions(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let back = a.to_string();
            assert_eq!(parse_actions(&back).as_ref(), Ok(&a), "{text} -> {back}");
            n += 1;
        }
        assert!(n > 200, "corpus has {n} actions");
    }
}
