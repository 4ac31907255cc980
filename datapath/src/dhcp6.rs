//! DHCPv6 replies for `put_dhcpv6_opts` (what ovn-controller's pinctrl
//! answers with the options northd wrote from the NB's DHCP_Options): a
//! SOLICIT gets an ADVERTISE, a REQUEST, RENEW, REBIND or CONFIRM a
//! REPLY with the address, an INFORMATION-REQUEST a REPLY without one.
//!
//! Pure functions over bytes: the request's DHCPv6 message in, the
//! reply's out (the caller wraps it in UDP/IPv6/Ethernet).

use ironflow_pipeline::lflow::actions::ArgValue;

const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const REQUEST: u8 = 3;
const CONFIRM: u8 = 4;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const REPLY: u8 = 7;
const INFORMATION_REQUEST: u8 = 11;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;

/// Why no reply is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dhcp6Error {
    /// Too short, options running past the end, or no client identifier.
    Malformed,
    /// A message type that gets no answer here (RELEASE, DECLINE, …).
    NoReply(u8),
    /// The flow gave no `server_id`.
    NoServerId,
}

/// The options of a message: (code, value), in order.
fn options(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, Dhcp6Error> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(Dhcp6Error::Malformed);
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let value = b.get(4..4 + len).ok_or(Dhcp6Error::Malformed)?;
        out.push((code, value));
        b = &b[4 + len..];
    }
    Ok(out)
}

fn push(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn flat(v: &ArgValue) -> Vec<&ArgValue> {
    match v {
        ArgValue::Set(items) | ArgValue::List(items) => items.iter().flat_map(flat).collect(),
        other => vec![other],
    }
}

fn int(v: &ArgValue) -> Option<u128> {
    match v {
        ArgValue::Int(c) => Some(c.value),
        _ => None,
    }
}

/// A domain name in DNS wire form (RFC 1035 §3.1).
fn dns_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// The reply to the DHCPv6 message `request` (the UDP payload) with the
/// options of the `put_dhcpv6_opts` action.
pub fn reply(request: &[u8], opts: &[(String, ArgValue)]) -> Result<Vec<u8>, Dhcp6Error> {
    if request.len() < 4 {
        return Err(Dhcp6Error::Malformed);
    }
    let kind = request[0];
    let reply_type = match kind {
        SOLICIT => ADVERTISE,
        REQUEST | CONFIRM | RENEW | REBIND | INFORMATION_REQUEST => REPLY,
        other => return Err(Dhcp6Error::NoReply(other)),
    };
    let theirs = options(&request[4..])?;
    let client = theirs
        .iter()
        .find(|(c, _)| *c == OPT_CLIENTID)
        .map(|(_, v)| *v)
        .ok_or(Dhcp6Error::Malformed)?;
    let get = |name: &str| opts.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let server_mac = get("server_id")
        .and_then(int)
        .ok_or(Dhcp6Error::NoServerId)?;

    let mut out = vec![reply_type];
    out.extend_from_slice(&request[1..4]); // transaction id
                                           // DUID-LL: type 3, hardware type 1 (Ethernet), the server's MAC.
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&(server_mac as u64).to_be_bytes()[2..]);
    push(&mut out, OPT_SERVERID, &duid);
    push(&mut out, OPT_CLIENTID, client);
    let address = get("ia_addr").and_then(int);
    if let (Some(addr), false) = (address, kind == INFORMATION_REQUEST) {
        if let Some((_, ia)) = theirs.iter().find(|(c, _)| *c == OPT_IA_NA) {
            let iaid = ia.get(..4).ok_or(Dhcp6Error::Malformed)?;
            let mut iaaddr = addr.to_be_bytes().to_vec();
            iaaddr.extend_from_slice(&u32::MAX.to_be_bytes()); // preferred
            iaaddr.extend_from_slice(&u32::MAX.to_be_bytes()); // valid
            let mut na = iaid.to_vec();
            na.extend_from_slice(&[0; 8]); // T1, T2: the client's choice
            push(&mut na, OPT_IAADDR, &iaaddr);
            push(&mut out, OPT_IA_NA, &na);
        }
    }
    if let Some(dns) = get("dns_server") {
        let addrs: Vec<u8> = flat(dns)
            .into_iter()
            .filter_map(int)
            .flat_map(|a| a.to_be_bytes())
            .collect();
        if !addrs.is_empty() {
            push(&mut out, OPT_DNS_SERVERS, &addrs);
        }
    }
    if let Some(ArgValue::Str(domain)) = get("domain_search") {
        push(&mut out, OPT_DOMAIN_LIST, &dns_name(domain));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_pipeline::lflow::lexer::{Constant, Format};

    fn opts() -> Vec<(String, ArgValue)> {
        let v6 = |t: &str| {
            ArgValue::Int(Constant::new(
                u128::from(t.parse::<std::net::Ipv6Addr>().unwrap()),
                Format::Ipv6,
            ))
        };
        vec![
            ("ia_addr".into(), v6("fd00:6:1::a")),
            (
                "server_id".into(),
                ArgValue::Int(Constant::new(0x0000_0006_0001, Format::Ethernet)),
            ),
            ("dns_server".into(), ArgValue::Set(vec![v6("fd00::53")])),
            ("domain_search".into(), ArgValue::Str("ovn.org".into())),
        ]
    }

    fn message(kind: u8, with_ia: bool) -> Vec<u8> {
        let mut m = vec![kind, 0xab, 0xcd, 0xef];
        push(&mut m, OPT_CLIENTID, &[0, 3, 0, 1, 0x0a, 0, 0, 6, 1, 0x0a]);
        if with_ia {
            push(&mut m, OPT_IA_NA, &[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        m
    }

    #[test]
    fn solicit_gets_an_advertise_with_the_address() {
        let r = reply(&message(SOLICIT, true), &opts()).unwrap();
        assert_eq!(r[0], ADVERTISE);
        assert_eq!(&r[1..4], &[0xab, 0xcd, 0xef]);
        let o = options(&r[4..]).unwrap();
        let find = |c| o.iter().find(|(code, _)| *code == c).map(|(_, v)| *v);
        assert_eq!(
            find(OPT_SERVERID),
            Some(&[0, 3, 0, 1, 0, 0, 0, 6, 0, 1][..])
        );
        assert_eq!(find(OPT_CLIENTID).unwrap()[4..], [0x0a, 0, 0, 6, 1, 0x0a]);
        let ia = find(OPT_IA_NA).unwrap();
        assert_eq!(&ia[..4], &[0, 0, 0, 7], "the client's IAID");
        let sub = options(&ia[12..]).unwrap();
        assert_eq!(sub[0].0, OPT_IAADDR);
        assert_eq!(
            &sub[0].1[..16],
            &"fd00:6:1::a"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(find(OPT_DOMAIN_LIST), Some(&b"\x03ovn\x03org\x00"[..]));
        assert_eq!(find(OPT_DNS_SERVERS).unwrap().len(), 16);
    }

    #[test]
    fn information_request_gets_no_address_and_garbage_no_reply() {
        let r = reply(&message(INFORMATION_REQUEST, true), &opts()).unwrap();
        assert_eq!(r[0], REPLY);
        assert!(options(&r[4..])
            .unwrap()
            .iter()
            .all(|(c, _)| *c != OPT_IA_NA));
        assert_eq!(reply(&[1, 2], &opts()), Err(Dhcp6Error::Malformed));
        assert_eq!(
            reply(&[1, 0, 0, 0, 0, 1, 0, 9], &opts()),
            Err(Dhcp6Error::Malformed)
        );
        assert_eq!(
            reply(&[1, 0, 0, 0], &opts()),
            Err(Dhcp6Error::Malformed),
            "no client id"
        );
        assert_eq!(
            reply(&message(8, false), &opts()),
            Err(Dhcp6Error::NoReply(8))
        );
        assert_eq!(
            reply(&message(SOLICIT, true), &[]),
            Err(Dhcp6Error::NoServerId)
        );
    }
}
