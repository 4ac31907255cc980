//! The prerequisites a flow's actions add to its match, as ovn-controller
//! adds them: a field an action reads or writes brings its own
//! (`ip6.src <-> ip6.dst` needs `ip6`, `udp.src = 53` needs `udp`), and
//! so do the actions that only make sense on some packets (`ct_next` on
//! IP, `icmp4 { … }` on IPv4, `nd_na { … }` on a solicitation). The
//! actions nested in a block act on the new packet and add nothing.
//!
//! Without them two flows northd writes with one match and different
//! actions (`ls_in_dns_response`'s IPv4 and IPv6 answers) would both
//! match every packet, and which one runs would be an accident.

use super::actions::{Action, Actions, Args, Bare, Block, Source};
use super::cursor::FieldRef;
use super::expr::MatchExpr;
use super::symbols::{lookup, Symbol};

/// The prerequisite expressions (OVN match text) of `actions`, each once.
pub fn of(actions: &Actions) -> Vec<&'static str> {
    let mut out = Vec::new();
    for a in &actions.0 {
        add_action(a, &mut out);
    }
    out
}

/// `expr` with the prerequisites of `actions` required too.
pub fn and_match(expr: MatchExpr, prereqs: &[&'static str]) -> MatchExpr {
    if prereqs.is_empty() {
        return expr;
    }
    let mut terms = vec![expr];
    terms.extend(prereqs.iter().map(|p| MatchExpr::Field(FieldRef::whole(p))));
    MatchExpr::And(terms)
}

fn push(out: &mut Vec<&'static str>, p: &'static str) {
    if !out.contains(&p) {
        out.push(p);
    }
}

fn add_field(f: &FieldRef, out: &mut Vec<&'static str>) {
    if let Some(Symbol::Field(field)) = lookup(&f.name) {
        if let Some(p) = field.prereqs {
            push(out, p);
        }
    }
}

fn add_action(a: &Action, out: &mut Vec<&'static str>) {
    match a {
        Action::Assign { dst, src } => {
            add_field(dst, out);
            if let Source::Field(f) = src {
                add_field(f, out);
            }
        }
        Action::Exchange(x, y) => {
            add_field(x, out);
            add_field(y, out);
        }
        Action::Decrement(f) => {
            add_field(f, out);
            push(out, "ip");
        }
        Action::Push(f) | Action::Pop(f) => add_field(f, out),
        Action::Block { kind, .. } => {
            let p = match kind {
                Block::Arp | Block::Icmp4 | Block::Icmp4Error => Some("ip4"),
                Block::Icmp6 | Block::Icmp6Error | Block::NdNs => Some("ip6"),
                Block::NdNa | Block::NdNaRouter => Some("nd_ns"),
                Block::TcpReset => Some("tcp"),
                Block::SctpAbort => Some("sctp"),
                Block::CtCommit => Some("ip"),
                Block::Clone | Block::Reject => None,
            };
            if let Some(p) = p {
                push(out, p);
            }
        }
        Action::Bare(b) => match b {
            Bare::CtNext | Bare::CtCommitNat | Bare::CtSnatToVip => push(out, "ip"),
            Bare::CtClear | Bare::Igmp | Bare::HandleDhcpv6Reply => {}
        },
        Action::Nat { .. } | Action::CtLb(_) | Action::CtCommitArgs(_) => push(out, "ip"),
        Action::Call { result, args, .. } => {
            if let Some(r) = result {
                add_field(r, out);
            }
            if let Args::Fields(fields) = args {
                for f in fields {
                    add_field(f, out);
                }
            }
        }
        Action::Next { .. } | Action::Output | Action::Drop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lflow::actions::parse_actions;

    fn prereqs(text: &str) -> Vec<&'static str> {
        of(&parse_actions(text).unwrap())
    }

    #[test]
    fn actions_bring_their_fields_prerequisites() {
        assert_eq!(
            prereqs("eth.dst <-> eth.src; ip6.src <-> ip6.dst; udp.dst = udp.src; udp.src = 53; outport = inport; output;"),
            vec!["ip6", "udp"]
        );
        assert_eq!(prereqs("ip.ttl--; next;"), vec!["ip"]);
        assert_eq!(prereqs("ct_next;"), vec!["ip"]);
        assert_eq!(prereqs("outport = \"p\"; output;"), Vec::<&str>::new());
        assert_eq!(
            prereqs("put_arp(inport, arp.spa, arp.sha); next;"),
            vec!["arp"]
        );
    }

    #[test]
    fn nested_actions_add_only_their_blocks() {
        assert_eq!(
            prereqs("icmp4 { eth.dst <-> eth.src; ip4.dst = ip4.src; output; };"),
            vec!["ip4"]
        );
        assert_eq!(
            prereqs("clone { ip4.dst = 10.0.0.1; next; };"),
            Vec::<&str>::new()
        );
        assert_eq!(
            prereqs("nd_na_router { eth.src = 00:00:00:00:00:01; output; };"),
            vec!["nd_ns"]
        );
    }
}
