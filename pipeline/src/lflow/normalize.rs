//! Gives a parsed match its meaning: a disjunction of conjunctions of
//! masked matches on key fields, the form a classifier can install.
//!
//! The steps follow OVN's own: `!` is pushed down to the comparisons
//! (flipping them), predicates are expanded, each comparison is AND-ed with
//! its field's prerequisites — always in a positive sense, so `!tcp.dst ==
//! 80` still needs TCP — names are resolved (ports and multicast groups of
//! the flow's datapath, address sets, port groups), sets become
//! disjunctions, ranges become prefix masks, and the result is multiplied
//! out into disjunctive normal form with a limit on its size.

use super::cursor::FieldRef;
use super::expr::{parse_match, MatchExpr, Relop, Value};
use super::lexer::{tokenize, Constant, Token};
use super::symbols::{lookup, ones, Field, FieldKind, KeyField, Symbol};
use std::fmt;

/// Most conjunctions one match may expand to. OVN would use conjunctive
/// flows past this point; ironflow refuses the flow with a clear error.
pub const MAX_CONJUNCTIONS: usize = 10_000;

/// Deepest predicate/prerequisite expansion (they nest a few levels; more
/// means a cycle).
const MAX_EXPANSION: usize = 16;

/// What a match refers to by name, for one datapath.
pub trait Resolver {
    /// Tunnel key of a logical port or multicast group of the datapath.
    fn port_key(&self, name: &str) -> Option<u32>;
    /// Addresses of an address set (`$name`), `None` if there is none.
    fn address_set(&self, name: &str) -> Option<Vec<String>>;
    /// Port names of a port group (`@name`), `None` if there is none.
    fn port_group(&self, name: &str) -> Option<Vec<String>>;
    /// `is_chassis_resident("port")`: whether the port is bound to the
    /// chassis the flows are compiled for (always, by default, as in
    /// ovn-trace).
    fn is_chassis_resident(&self, _port: &str) -> bool {
        true
    }
}

/// Bits of one key field: `field & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Masked {
    pub value: u128,
    pub mask: u128,
}

/// Masked matches that must all hold, at most one per key field, in key
/// field order. A sorted vector rather than a map: normalising multiplies
/// conjunctions out, cloning and merging them by the thousand, and a few
/// fields in one allocation clone and merge far faster than tree nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conjunction(pub Vec<(KeyField, Masked)>);

impl Conjunction {
    /// The conjunction of `fields` (any order; a field given twice must
    /// agree with itself), `None` when they contradict each other.
    pub fn of(fields: impl IntoIterator<Item = (KeyField, Masked)>) -> Option<Conjunction> {
        let mut c = Conjunction::default();
        for (k, m) in fields {
            if !c.add(k, m) {
                return None;
            }
        }
        Some(c)
    }

    /// Adds every constraint of `other`; `false` when one contradicts.
    fn add_all(&mut self, other: &Conjunction) -> bool {
        other.0.iter().all(|&(k, m)| self.add(k, m))
    }

    /// Adds a constraint; `false` when it contradicts one already there.
    fn add(&mut self, key: KeyField, m: Masked) -> bool {
        match self.0.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(at) => match combine(self.0[at].1, m) {
                Some(both) => {
                    self.0[at].1 = both;
                    true
                }
                None => false,
            },
            Err(at) => {
                self.0.insert(at, (key, m));
                true
            }
        }
    }

    /// Both conjunctions at once (a merge of the two sorted lists).
    fn merged(&self, other: &Conjunction) -> Option<Conjunction> {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while let (Some(&(ka, ma)), Some(&(kb, mb))) = (a.get(i), b.get(j)) {
            match ka.cmp(&kb) {
                std::cmp::Ordering::Less => {
                    out.push((ka, ma));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push((kb, mb));
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((ka, combine(ma, mb)?));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Some(Conjunction(out))
    }
}

/// Both constraints on one field, `None` when they disagree on a bit.
fn combine(a: Masked, b: Masked) -> Option<Masked> {
    let common = a.mask & b.mask;
    (a.value & common == b.value & common).then_some(Masked {
        value: a.value | b.value,
        mask: a.mask | b.mask,
    })
}

impl fmt::Display for Conjunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(any)");
        }
        for (i, (k, m)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if m.mask == k.full_mask() {
                write!(f, "{k}={:#x}", m.value)?;
            } else {
                write!(f, "{k}={:#x}/{:#x}", m.value, m.mask)?;
            }
        }
        Ok(())
    }
}

/// A match in normal form: it holds when any conjunction holds. No
/// conjunctions: it never holds; one empty conjunction: it always does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized(pub Vec<Conjunction>);

impl Normalized {
    pub fn never_matches(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a match has no meaning; the message names what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError(pub String);

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NormalizeError {}

fn fail<T>(msg: impl Into<String>) -> Result<T, NormalizeError> {
    Err(NormalizeError(msg.into()))
}

/// A Boolean formula over masked bits, with negation already gone.
#[derive(Debug, Clone)]
enum Formula {
    Const(bool),
    Bits(KeyField, Masked),
    And(Vec<Formula>),
    Or(Vec<Formula>),
    /// A predicate or prerequisite, normalised once per process (see
    /// [`symbol_dnf`]); its error, if any, counts where it is used.
    Symbol(&'static Result<Vec<Conjunction>, NormalizeError>),
}

/// Normalises a parsed match for one datapath.
pub fn normalize(e: &MatchExpr, r: &dyn Resolver) -> Result<Normalized, NormalizeError> {
    let formula = Lower { r, inline: false }.expr(e, false, 0)?;
    let mut conjs = dnf(&formula)?;
    conjs.sort();
    conjs.dedup();
    Ok(Normalized(conjs))
}

/// Parses and normalises a `match` column; syntax errors carry their offset.
pub fn parse_and_normalize(text: &str, r: &dyn Resolver) -> Result<Normalized, NormalizeError> {
    let e = parse_match(text).map_err(|e| NormalizeError(e.to_string()))?;
    normalize(&e, r)
}

struct Lower<'a> {
    r: &'a dyn Resolver,
    /// Expand predicates and prerequisites in place rather than use their
    /// shared normal forms: how those are computed.
    inline: bool,
}

impl Lower<'_> {
    /// Lowers `e`, negated when `neg`, pushing the negation inwards.
    fn expr(&self, e: &MatchExpr, neg: bool, depth: usize) -> Result<Formula, NormalizeError> {
        if depth > MAX_EXPANSION {
            return fail("predicates or prerequisites expand too deeply (a cycle?)");
        }
        Ok(match e {
            MatchExpr::Bool(b) => Formula::Const(*b != neg),
            MatchExpr::Resident(port) => Formula::Const(self.r.is_chassis_resident(port) != neg),
            MatchExpr::Not(inner) => self.expr(inner, !neg, depth)?,
            MatchExpr::And(terms) | MatchExpr::Or(terms) => {
                let parts = terms
                    .iter()
                    .map(|t| self.expr(t, neg, depth))
                    .collect::<Result<Vec<_>, _>>()?;
                // De Morgan: a negated AND is an OR of negations.
                if matches!(e, MatchExpr::And(_)) != neg {
                    Formula::And(parts)
                } else {
                    Formula::Or(parts)
                }
            }
            MatchExpr::Field(field) => match lookup(&field.name) {
                Some(Symbol::Predicate(expansion)) if self.inline => {
                    self.expr(expansion_of(expansion)?, neg, depth + 1)?
                }
                Some(Symbol::Predicate(expansion)) => Formula::Symbol(symbol_dnf(expansion, neg)?),
                // A bare field means `field != 0`.
                _ => self.cmp(
                    field,
                    Relop::Ne,
                    &[Value::Int(Constant::new(0, super::lexer::Format::Decimal))],
                    neg,
                    depth,
                )?,
            },
            MatchExpr::Cmp {
                field, op, values, ..
            } => self.cmp(field, *op, values, neg, depth)?,
        })
    }

    fn cmp(
        &self,
        fr: &FieldRef,
        op: Relop,
        values: &[Value],
        neg: bool,
        depth: usize,
    ) -> Result<Formula, NormalizeError> {
        let Some(Symbol::Field(field)) = lookup(&fr.name) else {
            return fail(format!("`{}' is not a field", fr.name));
        };
        let op = if neg { negate(op) } else { op };
        let (low, width) = match fr.bits {
            Some((lo, hi)) if hi < field.width => (field.low + lo, hi - lo + 1),
            Some(_) => return fail(format!("{fr} is outside `{}'", fr.name)),
            None => (field.low, field.width),
        };
        let test = match field.kind {
            FieldKind::PortName => self.port_cmp(fr, field, op, values)?,
            FieldKind::Integer => self.int_cmp(fr, field.key, low, width, op, values)?,
        };
        match field.prereqs {
            None => Ok(test),
            Some(pre) if self.inline => Ok(Formula::And(vec![
                self.expr(expansion_of(pre)?, false, depth + 1)?,
                test,
            ])),
            Some(pre) => Ok(Formula::And(vec![
                Formula::Symbol(symbol_dnf(pre, false)?),
                test,
            ])),
        }
    }

    fn port_cmp(
        &self,
        fr: &FieldRef,
        field: &Field,
        op: Relop,
        values: &[Value],
    ) -> Result<Formula, NormalizeError> {
        if op != Relop::Eq {
            return fail(format!(
                "{fr} names logical ports and may only be compared with == (in a positive sense)"
            ));
        }
        // A port of another datapath (or none) simply never matches here.
        let mut keys = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Value::Str(s) => keys.extend(self.r.port_key(s)),
                Value::PortGroup(pg) => match self.r.port_group(pg) {
                    Some(ports) => keys.extend(ports.iter().filter_map(|n| self.r.port_key(n))),
                    None => return fail(format!("unknown port group @{pg}")),
                },
                other => return fail(format!("{fr} takes port names, not {other}")),
            }
        }
        Ok(Formula::Or(
            keys.into_iter()
                .map(|key| {
                    Formula::Bits(
                        field.key,
                        Masked {
                            value: key.into(),
                            mask: field.mask(),
                        },
                    )
                })
                .collect(),
        ))
    }

    fn int_cmp(
        &self,
        fr: &FieldRef,
        key: KeyField,
        low: u16,
        width: u16,
        op: Relop,
        values: &[Value],
    ) -> Result<Formula, NormalizeError> {
        let mut constants = Vec::new();
        for v in values {
            match v {
                Value::Int(c) => constants.push(*c),
                Value::AddrSet(name) => match self.r.address_set(name) {
                    Some(addrs) => {
                        for a in addrs {
                            constants.push(parse_address(&a).map_err(|e| {
                                NormalizeError(format!("address set ${name}: {e}"))
                            })?);
                        }
                    }
                    None => return fail(format!("unknown address set ${name}")),
                },
                other => return fail(format!("{fr} takes integers, not {other}")),
            }
        }
        let field_mask = ones(width);
        for c in &constants {
            if c.bits() > u32::from(width) {
                return fail(format!(
                    "{}-bit constant {} does not fit {width}-bit field {fr}",
                    c.bits(),
                    super::lexer::FormatConstant(c)
                ));
            }
        }
        let at = |value: u128, mask: u128| {
            Formula::Bits(
                key,
                Masked {
                    value: value << low,
                    mask: mask << low,
                },
            )
        };
        let eq = |c: &Constant| {
            let mask = c.mask.unwrap_or(field_mask);
            at(c.value & mask, mask)
        };
        Ok(match op {
            Relop::Eq => Formula::Or(constants.iter().map(eq).collect()),
            // Not equal: some masked bit differs.
            Relop::Ne => Formula::And(
                constants
                    .iter()
                    .map(|c| {
                        let mask = c.mask.unwrap_or(field_mask);
                        Formula::Or(
                            (0..width)
                                .filter(|b| mask >> b & 1 == 1)
                                .map(|b| at((!c.value >> b & 1) << b, 1 << b))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
            _ => {
                let [c] = constants.as_slice() else {
                    return fail(format!("{fr}: only == and != take a set of values"));
                };
                if c.mask.is_some() {
                    return fail(format!(
                        "{fr}: a masked constant cannot be compared with {}",
                        op.as_str()
                    ));
                }
                let v = c.value;
                let (lo, hi) = match op {
                    Relop::Lt if v == 0 => return Ok(Formula::Const(false)),
                    Relop::Lt => (0, v - 1),
                    Relop::Le => (0, v),
                    Relop::Gt if v == field_mask => return Ok(Formula::Const(false)),
                    Relop::Gt => (v + 1, field_mask),
                    _ => (v, field_mask),
                };
                Formula::Or(
                    range_to_prefixes(lo, hi, width)
                        .into_iter()
                        .map(|(v, m)| at(v, m))
                        .collect(),
                )
            }
        })
    }
}

/// A predicate's expansion or a prerequisite, parsed once per process: they
/// are fixed text in the symbol table and every match uses a few of them.
fn expansion_of(text: &'static str) -> Result<&'static MatchExpr, NormalizeError> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    type Parsed = HashMap<&'static str, Result<MatchExpr, String>>;
    static PARSED: OnceLock<Parsed> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        super::symbols::all()
            .filter_map(|(_, sym)| match sym {
                Symbol::Predicate(e) => Some(*e),
                Symbol::Field(f) => f.prereqs,
            })
            .map(|text| (text, parse_match(text).map_err(|e| e.to_string())))
            .collect()
    });
    match parsed.get(text) {
        Some(Ok(e)) => Ok(e),
        Some(Err(e)) => fail(format!("symbol table expansion {text:?}: {e}")),
        None => fail(format!("{text:?} is not in the symbol table")),
    }
}

/// A predicate's expansion or a prerequisite in normal form, negated or
/// not: what lowering and multiplying it out at each use would give (they
/// name no ports, address sets or port groups, so no datapath changes
/// them), computed once per process. Every match uses a few (`ip4`, `tcp`,
/// `arp`, …), and at 100k flows expanding them each time was a fifth of
/// the compile. Lowering errors come back here, normalising errors where
/// the result is used, as they would unshared.
fn symbol_dnf(
    text: &'static str,
    neg: bool,
) -> Result<&'static Result<Vec<Conjunction>, NormalizeError>, NormalizeError> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    type Normal = Result<Result<Vec<Conjunction>, NormalizeError>, NormalizeError>;
    static NORMAL: OnceLock<HashMap<(&'static str, bool), Normal>> = OnceLock::new();
    /// Symbols name no ports or sets; a lookup of one would be a bug in
    /// the symbol table, and finds nothing.
    struct NoNames;
    impl Resolver for NoNames {
        fn port_key(&self, _: &str) -> Option<u32> {
            None
        }
        fn address_set(&self, _: &str) -> Option<Vec<String>> {
            None
        }
        fn port_group(&self, _: &str) -> Option<Vec<String>> {
            None
        }
    }
    let normal = NORMAL.get_or_init(|| {
        let texts = super::symbols::all().filter_map(|(_, sym)| match sym {
            Symbol::Predicate(e) => Some(*e),
            Symbol::Field(f) => f.prereqs,
        });
        let mut out = HashMap::new();
        for text in texts {
            for neg in [false, true] {
                let lower = Lower {
                    r: &NoNames,
                    inline: true,
                };
                let lowered = expansion_of(text).and_then(|e| lower.expr(e, neg, 1));
                out.insert((text, neg), lowered.map(|f| dnf(&f)));
            }
        }
        out
    });
    match normal.get(&(text, neg)) {
        Some(Ok(normal)) => Ok(normal),
        Some(Err(e)) => Err(e.clone()),
        None => fail(format!("{text:?} is not in the symbol table")),
    }
}

fn negate(op: Relop) -> Relop {
    match op {
        Relop::Eq => Relop::Ne,
        Relop::Ne => Relop::Eq,
        Relop::Lt => Relop::Ge,
        Relop::Le => Relop::Gt,
        Relop::Gt => Relop::Le,
        Relop::Ge => Relop::Lt,
    }
}

/// An address-set member: one constant, maybe masked.
fn parse_address(text: &str) -> Result<Constant, String> {
    let tokens = tokenize(text).map_err(|e| format!("{text:?}: {e}"))?;
    match tokens.as_slice() {
        [t, end] if end.token == Token::End => match &t.token {
            Token::Int(c) => Ok(*c),
            _ => Err(format!("{text:?} is not an address")),
        },
        _ => Err(format!("{text:?} is not a single address")),
    }
}

/// The fewest (value, mask) prefixes covering `lo..=hi` in `width` bits.
pub fn range_to_prefixes(lo: u128, hi: u128, width: u16) -> Vec<(u128, u128)> {
    let field = ones(width);
    let mut out = Vec::new();
    let mut start = lo;
    loop {
        // Largest aligned block at `start` that stays within `hi`.
        let mut size_bits = if start == 0 {
            u32::from(width)
        } else {
            start.trailing_zeros().min(u32::from(width))
        };
        while size_bits > 0 && (start | ones(size_bits as u16)) > hi {
            size_bits -= 1;
        }
        let block = ones(size_bits as u16);
        out.push((start, field & !block));
        let end = start | block;
        if end >= hi {
            return out;
        }
        start = end + 1;
    }
}

fn dnf(f: &Formula) -> Result<Vec<Conjunction>, NormalizeError> {
    let too_big = || {
        fail(format!(
            "match expands to more than {MAX_CONJUNCTIONS} conjunctions"
        ))
    };
    match f {
        Formula::Const(true) => Ok(vec![Conjunction::default()]),
        Formula::Const(false) => Ok(Vec::new()),
        Formula::Bits(k, m) => Ok(vec![Conjunction(vec![(*k, *m)])]),
        Formula::Symbol(normal) => Result::clone(normal),
        Formula::Or(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p {
                    // A set of values: one conjunction each, never empty.
                    Formula::Bits(k, m) => out.push(Conjunction(vec![(*k, *m)])),
                    _ => {
                        let owned;
                        let d = match p {
                            Formula::Symbol(normal) => normal.as_ref().map_err(Clone::clone)?,
                            _ => {
                                owned = dnf(p)?;
                                &owned
                            }
                        };
                        // Something always true absorbs the rest.
                        if d.iter().any(|c| c.0.is_empty()) {
                            return Ok(vec![Conjunction::default()]);
                        }
                        out.extend_from_slice(d);
                    }
                }
                if out.len() > MAX_CONJUNCTIONS {
                    return too_big();
                }
            }
            Ok(out)
        }
        Formula::And(parts) => {
            let mut acc = vec![Conjunction::default()];
            for p in parts {
                // The common terms (one field, or anything with a single
                // conjunction) narrow each conjunction in place; only a
                // real disjunction multiplies out.
                if let Formula::Bits(k, m) = p {
                    acc.retain_mut(|c| c.add(*k, *m));
                } else {
                    let owned;
                    let d: &[Conjunction] = match p {
                        Formula::Symbol(normal) => normal.as_ref().map_err(Clone::clone)?,
                        _ => {
                            owned = dnf(p)?;
                            &owned
                        }
                    };
                    match d {
                        [] => return Ok(Vec::new()),
                        [one] => acc.retain_mut(|c| c.add_all(one)),
                        _ => {
                            let mut next = Vec::with_capacity(acc.len() * d.len());
                            for a in &acc {
                                for b in d {
                                    if let Some(m) = a.merged(b) {
                                        next.push(m);
                                        if next.len() > MAX_CONJUNCTIONS {
                                            return too_big();
                                        }
                                    }
                                }
                            }
                            acc = next;
                        }
                    }
                }
                if acc.len() > 1 {
                    acc.sort();
                    acc.dedup();
                }
            }
            Ok(acc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fixed {
        ports: HashMap<&'static str, u32>,
    }

    impl Resolver for Fixed {
        fn port_key(&self, name: &str) -> Option<u32> {
            self.ports.get(name).copied()
        }
        fn address_set(&self, name: &str) -> Option<Vec<String>> {
            match name {
                "web" => Some(vec!["192.168.3.3".into(), "10.0.0.0/8".into()]),
                "empty" => Some(vec![]),
                "bad" => Some(vec!["not an address".into()]),
                _ => None,
            }
        }
        fn port_group(&self, name: &str) -> Option<Vec<String>> {
            (name == "pg").then(|| vec!["sshd-2".into(), "elsewhere".into()])
        }
    }

    fn fixed() -> Fixed {
        Fixed {
            ports: HashMap::from([("sshd-2", 3), ("web-1", 2), ("_MC_flood", 32768)]),
        }
    }

    fn norm(text: &str) -> Vec<String> {
        parse_and_normalize(text, &fixed())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn adds_prerequisites() {
        assert_eq!(
            norm("tcp.dst == 22"),
            [
                "ethtype=0x800,ipproto=0x6,tpdst=0x16",
                "ethtype=0x86dd,ipproto=0x6,tpdst=0x16"
            ]
        );
        assert_eq!(norm("ct.est"), ["ctstate=0x22/0x22"]);
        // Negation flips the comparison but the prerequisite stays positive.
        assert_eq!(norm("!ct.est"), ["ctstate=0x20/0x22"]);
        assert_eq!(norm("1"), ["(any)"]);
        assert!(norm("0").is_empty());
    }

    #[test]
    fn resolves_ports_groups_and_address_sets() {
        assert_eq!(norm("inport == \"sshd-2\""), ["inport=0x3"]);
        assert_eq!(
            norm("outport == {\"web-1\", \"_MC_flood\"}"),
            ["outport=0x2", "outport=0x8000"]
        );
        // Ports of other datapaths never match here.
        assert!(norm("inport == \"elsewhere\"").is_empty());
        assert_eq!(norm("outport == @pg"), ["outport=0x3"]);
        assert_eq!(
            norm("ip4.src == $web"),
            [
                "ethtype=0x800,nw4src=0xa000000/0xff000000",
                "ethtype=0x800,nw4src=0xc0a80303"
            ]
        );
        assert!(norm("ip4.src == $empty").is_empty());
    }

    #[test]
    fn handles_subfields_registers_and_sets() {
        // reg0 is xxreg0[96..127].
        assert_eq!(
            norm("reg0[10] == 1"),
            [format!("xxreg0={:#x}/{:#x}", 1u128 << 106, 1u128 << 106)]
        );
        assert_eq!(norm("reg9[2]"), ["xreg4=0x4/0x4"]);
        assert_eq!(
            norm("eth.src == {0a:00:00:00:00:01 0a:00:00:00:00:02}").len(),
            2
        );
        assert_eq!(norm("eth.mcast"), ["ethdst=0x10000000000/0x10000000000"]);
        assert_eq!(norm("ip4 && ip6"), Vec::<String>::new());
    }

    #[test]
    fn turns_inequalities_and_ranges_into_masks() {
        // 1..=1024 needs prefixes 1, 2/2^1, 4/2^2, … 512/2^9 and 1024.
        let r = norm("1 <= tcp.dst <= 1024");
        assert_eq!(r.len(), 2 * 11, "{r:?}");
        assert_eq!(norm("ip.ttl != 255").len(), 16, "8 bits × IPv4/IPv6");
        assert_eq!(norm("!(ip.ttl == 0)").len(), 16);
        assert!(norm("tcp.dst < 0").is_empty());
    }

    #[test]
    fn range_prefixes_cover_exactly() {
        for (lo, hi) in [
            (0u128, 65535u128),
            (1, 1024),
            (5, 5),
            (3, 200),
            (1000, 65535),
        ] {
            let prefixes = range_to_prefixes(lo, hi, 16);
            for x in 0..65536u128 {
                let hit = prefixes.iter().filter(|(v, m)| x & m == *v).count();
                assert_eq!(
                    hit,
                    usize::from((lo..=hi).contains(&x)),
                    "{lo}..{hi} at {x}"
                );
            }
        }
    }

    #[test]
    fn refuses_meaningless_matches() {
        for (text, what) in [
            ("inport != \"sshd-2\"", "only be compared with =="),
            ("!(inport == \"sshd-2\")", "only be compared with =="),
            ("inport == 3", "takes port names"),
            ("ip4.src == \"x\"", "takes integers"),
            ("reg0[0] == 2", "does not fit"),
            ("ip.ttl == 256", "does not fit"),
            ("reg0[0..15] == 0.0.0.1", "32-bit constant"),
            ("ip4.src == $nope", "unknown address set"),
            ("ip4.src == $bad", "not an address"),
            ("outport == @nope", "unknown port group"),
            ("tcp.dst < 0x10/0xf0", "masked"),
            ("tcp.dst < {1, 2}", "only == and !="),
            ("ip6.src != {::1, ::2, ::3}", "more than"),
        ] {
            let e = parse_and_normalize(text, &fixed()).unwrap_err();
            assert!(e.0.contains(what), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod mutation_tests {
    //! Mangled matches must fail with an error, never a panic: real northd
    //! matches with bytes flipped, dropped and repeated go through the
    //! lexer, the parser and normalisation.
    use super::*;
    use crate::lflow::mangle::mangled;

    struct AnyName;

    impl Resolver for AnyName {
        fn port_key(&self, name: &str) -> Option<u32> {
            Some(name.len() as u32)
        }
        fn address_set(&self, name: &str) -> Option<Vec<String>> {
            Some(vec![name.to_string(), "10.0.0.0/8".into()])
        }
        fn port_group(&self, name: &str) -> Option<Vec<String>> {
            Some(vec![name.to_string()])
        }
    }

    #[test]
    fn mangled_matches_never_panic() {
        let (mut ok, mut refused) = (0, 0);
        for text in mangled(include_str!("testdata/matches.txt"), 30_000) {
            match parse_and_normalize(&text, &AnyName) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(ok > 1000 && refused > 1000, "ok {ok}, refused {refused}");
    }
}
