//! Checks a parsed action program against the symbol table, as
//! ovn-controller does before it installs a flow: every field must exist,
//! be writable where it is written, and fit what is put in it.

use super::actions::{Action, Actions, Args, Block, Func, Returns, Source};
use super::cursor::FieldRef;
use super::symbols::{lookup, FieldKind, Symbol, Writable};
use crate::network::Pipeline;

/// What a field reference stands for, once looked up.
struct Resolved {
    width: u16,
    kind: FieldKind,
    writable: Writable,
}

/// OVN fields that only actions may set (`icmp4.frag_mtu = 1500`).
const OVN_FIELDS: [(&str, u16); 2] = [("icmp4.frag_mtu", 16), ("icmp6.frag_mtu", 32)];

/// Functions whose result is one bit: did the lookup or check succeed.
const BOOLEAN_RESULT: [Func; 16] = [
    Func::LookupArp,
    Func::LookupArpIp,
    Func::LookupNd,
    Func::LookupNdIp,
    Func::LookupFdb,
    Func::PutDhcpOpts,
    Func::PutDhcpv6Opts,
    Func::PutNdRaOpts,
    Func::DnsLookup,
    Func::CheckPktLarger,
    Func::CheckInPortSec,
    Func::CheckOutPortSec,
    Func::ChkLbHairpin,
    Func::ChkLbHairpinReply,
    Func::ChkEcmpNh,
    Func::ChkEcmpNhMac,
];

/// Checks `actions` of a flow in `pipeline`; the error names what is wrong.
pub fn check_actions(actions: &Actions, pipeline: Pipeline) -> Result<(), String> {
    Checker {
        pipeline,
        in_ct_commit: false,
    }
    .list(actions)
}

struct Checker {
    pipeline: Pipeline,
    in_ct_commit: bool,
}

impl Checker {
    fn list(&self, actions: &Actions) -> Result<(), String> {
        actions.0.iter().try_for_each(|a| self.action(a))
    }

    fn action(&self, a: &Action) -> Result<(), String> {
        match a {
            Action::Assign { dst, src } => {
                let d = self.dst(dst)?;
                match src {
                    Source::Const(c) if d.kind == FieldKind::PortName => Err(format!(
                        "{dst} names a logical port: assign a quoted port name, not {}",
                        super::lexer::FormatConstant(c)
                    )),
                    Source::Const(c) if c.bits() > u32::from(d.width) => Err(format!(
                        "{}-bit constant {} does not fit {}-bit field {dst}",
                        c.bits(),
                        super::lexer::FormatConstant(c),
                        d.width
                    )),
                    Source::Const(_) => Ok(()),
                    Source::Str(_) if d.kind == FieldKind::PortName => Ok(()),
                    Source::Str(s) => Err(format!("{dst} is an integer field; {s:?} is a string")),
                    Source::Field(src) => same_type(dst, &d, src, &self.read(src)?),
                }
            }
            Action::Exchange(a, b) => {
                let (ra, rb) = (self.dst(a)?, self.dst(b)?);
                same_type(a, &ra, b, &rb)
            }
            Action::Decrement(f) if f.name == "ip.ttl" && f.bits.is_none() => Ok(()),
            Action::Decrement(f) => Err(format!("only ip.ttl can be decremented, not {f}")),
            Action::Push(f) | Action::Pop(f) => self.read(f).map(drop),
            Action::Block {
                kind: Block::CtCommit,
                body,
            } => Checker {
                in_ct_commit: true,
                ..*self
            }
            .list(body),
            // A clone or a block that builds a new packet may send its
            // packet back to the ingress pipeline (northd's `reject {
            // outport <-> inport; next(pipeline=ingress, …); }` in egress
            // ACLs, and a gateway router's lr_out_egr_loop `clone { …
            // outport = ""; … next(pipeline=ingress, table=0); }`).
            Action::Block { body, .. } => Checker {
                pipeline: Pipeline::Ingress,
                ..*self
            }
            .list(body),
            Action::CtCommitArgs(pairs) => pairs.iter().try_for_each(|(name, c)| {
                let width = if name == "ct_mark" { 32 } else { 128 };
                if c.bits() > width {
                    return Err(format!(
                        "{}-bit constant does not fit {width}-bit {name}",
                        c.bits()
                    ));
                }
                Ok(())
            }),
            Action::Call { result, func, args } => {
                if let Some(r) = result {
                    let d = self.dst(r)?;
                    if BOOLEAN_RESULT.contains(func) && d.width != 1 {
                        return Err(format!(
                            "{} stores one bit; {r} has {}",
                            func.name(),
                            d.width
                        ));
                    }
                    if *func == Func::Select && d.width < 16 {
                        return Err(format!(
                            "select needs at least 16 bits to store into; {r} has {}",
                            d.width
                        ));
                    }
                }
                debug_assert_eq!(result.is_some(), func.signature().0 == Returns::Result);
                match args {
                    Args::Fields(fields) => fields.iter().try_for_each(|f| self.read(f).map(drop)),
                    Args::StringField(_, f) => self.read(f).map(drop),
                    _ => Ok(()),
                }
            }
            Action::Next { .. }
            | Action::Output
            | Action::Drop
            | Action::Bare(_)
            | Action::Nat { .. }
            | Action::CtLb(_) => Ok(()),
        }
    }

    /// A field being read.
    fn read(&self, f: &FieldRef) -> Result<Resolved, String> {
        let (width, kind, writable) = match lookup(&f.name) {
            Some(Symbol::Field(field)) => (field.width, field.kind, field.writable),
            Some(Symbol::Predicate(_)) => {
                return Err(format!("{} is a predicate, not a field", f.name))
            }
            None => match OVN_FIELDS.iter().find(|(n, _)| *n == f.name) {
                Some((_, w)) => (*w, FieldKind::Integer, Writable::Yes),
                None => return Err(format!("unknown field {}", f.name)),
            },
        };
        let width = match f.bits {
            Some((_, high)) if high >= width => {
                return Err(format!("{f} is outside {}, which has {width} bits", f.name))
            }
            Some(_) if kind == FieldKind::PortName => {
                return Err(format!("{} names a port; it has no bits to take", f.name))
            }
            Some((low, high)) => high - low + 1,
            None => width,
        };
        Ok(Resolved {
            width,
            kind,
            writable,
        })
    }

    /// A field being written.
    fn dst(&self, f: &FieldRef) -> Result<Resolved, String> {
        let r = self.read(f)?;
        match r.writable {
            Writable::No => Err(format!("{} is read-only", f.name)),
            Writable::CtCommit if !self.in_ct_commit => Err(format!(
                "{} can only be set inside ct_commit {{ … }}",
                f.name
            )),
            Writable::Yes if self.in_ct_commit => Err(format!(
                "ct_commit {{ … }} may set only ct_mark and ct_label, not {}",
                f.name
            )),
            _ if f.name == "outport" && self.pipeline == Pipeline::Egress => {
                Err("outport cannot be changed in the egress pipeline".into())
            }
            _ => Ok(r),
        }
    }
}

fn same_type(a: &FieldRef, ra: &Resolved, b: &FieldRef, rb: &Resolved) -> Result<(), String> {
    if ra.kind != rb.kind {
        return Err(format!(
            "{a} and {b} are not the same type (one names ports)"
        ));
    }
    if ra.width != rb.width && ra.kind == FieldKind::Integer {
        return Err(format!(
            "{a} has {} bits but {b} has {}",
            ra.width, rb.width
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lflow::actions::parse_actions;

    fn check(text: &str, pipeline: Pipeline) -> Result<(), String> {
        check_actions(&parse_actions(text).unwrap(), pipeline)
    }

    #[test]
    fn accepts_what_northd_writes() {
        for text in include_str!("testdata/actions.txt").lines() {
            // Whether a flow is ingress or egress is not in the corpus; both
            // must pass except for writes to outport.
            let ingress = check(text, Pipeline::Ingress);
            assert!(ingress.is_ok(), "{text}: {ingress:?}");
        }
        check(
            "icmp4 { icmp4.frag_mtu = 1442; output; };",
            Pipeline::Ingress,
        )
        .unwrap();
        check(
            "ct_commit { ct_mark.blocked = 1; ct_label.label = reg3; }; next;",
            Pipeline::Egress,
        )
        .unwrap();
        // northd 23.03's lr_out_egr_loop on a gateway router.
        check(
            "clone { ct_clear; inport = outport; outport = \"\"; flags = 0; flags.loopback = 1; next(pipeline=ingress, table=0); };",
            Pipeline::Egress,
        )
        .unwrap();
        check(
            "reject { outport <-> inport; next(pipeline=ingress,table=25); };",
            Pipeline::Egress,
        )
        .unwrap();
    }

    #[test]
    fn refuses_what_ovn_refuses() {
        for (text, pipeline, what) in [
            ("frob.bar = 1;", Pipeline::Ingress, "unknown field frob.bar"),
            ("eth.type = 0x800;", Pipeline::Ingress, "read-only"),
            ("ip4 = 1;", Pipeline::Ingress, "predicate"),
            (
                "ct_mark.blocked = 1;",
                Pipeline::Ingress,
                "inside ct_commit",
            ),
            (
                "ct_commit { reg0 = 1; };",
                Pipeline::Ingress,
                "only ct_mark and ct_label",
            ),
            ("outport = \"p\";", Pipeline::Egress, "egress"),
            ("outport = 3;", Pipeline::Ingress, "quoted port name"),
            ("reg0 = \"p\";", Pipeline::Ingress, "integer field"),
            ("reg0[0..3] = 16;", Pipeline::Ingress, "does not fit 4-bit"),
            (
                "reg0 = eth.src;",
                Pipeline::Ingress,
                "32 bits but eth.src has 48",
            ),
            ("outport <-> reg0;", Pipeline::Ingress, "not the same type"),
            ("reg0--;", Pipeline::Ingress, "only ip.ttl"),
            (
                "reg0[3] = lookup_arp(inport, arp.spa, frob);",
                Pipeline::Ingress,
                "unknown field frob",
            ),
            (
                "reg0[0..7] = lookup_arp(inport, arp.spa, arp.sha);",
                Pipeline::Ingress,
                "stores one bit",
            ),
            ("reg0[40] = 1;", Pipeline::Ingress, "outside reg0"),
            (
                "reg0[0..7] = select(1, 2);",
                Pipeline::Ingress,
                "at least 16 bits",
            ),
            ("clone { ip.proto = 6; };", Pipeline::Ingress, "read-only"),
        ] {
            let e = check(text, pipeline).unwrap_err();
            assert!(e.contains(what), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod mutation_tests {
    use super::*;
    use crate::lflow::actions::parse_actions;
    use crate::lflow::mangle::mangled;

    /// Mangled actions fail with an error, never a panic, through the
    /// parser, the round trip and the check.
    #[test]
    fn mangled_actions_never_panic() {
        let (mut ok, mut refused) = (0, 0);
        for text in mangled(include_str!("testdata/actions.txt"), 30_000) {
            match parse_actions(&text) {
                Ok(a) => {
                    assert_eq!(parse_actions(&a.to_string()).as_ref(), Ok(&a), "{text}");
                    let _ = check_actions(&a, Pipeline::Egress);
                    ok += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(ok > 1000 && refused > 1000, "ok {ok}, refused {refused}");
    }
}
