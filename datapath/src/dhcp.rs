//! DHCPv4 replies for `put_dhcp_opts` (what ovn-controller's pinctrl
//! answers for the options northd wrote from the NB's DHCP_Options):
//! the client's DISCOVER gets an OFFER, its REQUEST an ACK (or a NAK when
//! it asks for another address), an INFORM an ACK without a lease.
//!
//! Pure functions over bytes: the request's DHCP message in, the reply's
//! DHCP message out (the caller wraps it in UDP/IP/Ethernet).

use ironflow_pipeline::lflow::actions::ArgValue;

/// The fixed part of a DHCP message (RFC 2131 §2) up to the options.
const FIXED: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message: some clients drop shorter replies.
const MIN_MESSAGE: usize = 300;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const INFORM: u8 = 8;

/// Why no reply is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpError {
    /// Not a BOOTREQUEST with the magic cookie and a message type.
    Malformed,
    /// A message type that gets no answer (RELEASE, DECLINE, …).
    NoReply(u8),
    /// The flow gave no `offerip`.
    NoOffer,
}

/// How an option is encoded.
enum Kind {
    Ips,
    U8,
    U16,
    U32,
    Text,
    /// RFC 3442 classless static routes.
    Routes,
}

/// The options OVN knows by name, with their codes.
fn option(name: &str) -> Option<(u8, Kind)> {
    Some(match name {
        "netmask" => (1, Kind::Ips),
        "router" => (3, Kind::Ips),
        "dns_server" => (6, Kind::Ips),
        "log_server" => (7, Kind::Ips),
        "lpr_server" => (9, Kind::Ips),
        "hostname" => (12, Kind::Text),
        "domain_name" => (15, Kind::Text),
        "ip_forward_enable" => (19, Kind::U8),
        "default_ttl" => (23, Kind::U8),
        "mtu" => (26, Kind::U16),
        "broadcast_address" => (28, Kind::Ips),
        "router_discovery" => (31, Kind::U8),
        "router_solicitation" => (32, Kind::Ips),
        "arp_cache_timeout" => (35, Kind::U32),
        "tcp_keepalive_interval" => (38, Kind::U32),
        "ntp_server" => (42, Kind::Ips),
        "netbios_name_server" => (44, Kind::Ips),
        "netbios_node_type" => (46, Kind::U8),
        "lease_time" => (51, Kind::U32),
        "server_id" => (54, Kind::Ips),
        "T1" => (58, Kind::U32),
        "T2" => (59, Kind::U32),
        "tftp_server" => (66, Kind::Text),
        "bootfile_name" => (67, Kind::Text),
        "classless_static_route" => (121, Kind::Routes),
        "tftp_server_address" => (150, Kind::Ips),
        "ms_classless_static_route" => (249, Kind::Routes),
        "wpad" => (252, Kind::Text),
        _ => return None,
    })
}

/// The flat list of values (`{a, b}` or `a, b` or one value).
fn values(v: &ArgValue) -> Vec<&ArgValue> {
    match v {
        ArgValue::Set(items) | ArgValue::List(items) => items.iter().flat_map(values).collect(),
        other => vec![other],
    }
}

fn int(v: &ArgValue) -> Option<u128> {
    match v {
        ArgValue::Int(c) => Some(c.value),
        ArgValue::Str(s) | ArgValue::Id(s) => s.parse().ok(),
        _ => None,
    }
}

/// A prefix length from a constant's mask (`10.0.0.0/24`).
fn prefix_len(v: &ArgValue) -> u8 {
    match v {
        ArgValue::Int(c) => c.mask.map_or(32, |m| (m as u32).count_ones() as u8),
        _ => 32,
    }
}

/// Encodes one option's value; None when it does not fit its kind.
fn encode(kind: &Kind, v: &ArgValue) -> Option<Vec<u8>> {
    let vals = values(v);
    Some(match kind {
        Kind::Ips => vals
            .iter()
            .map(|v| int(v).map(|i| (i as u32).to_be_bytes()))
            .collect::<Option<Vec<_>>>()?
            .concat(),
        Kind::U8 => vec![int(vals.first()?)? as u8],
        Kind::U16 => (int(vals.first()?)? as u16).to_be_bytes().to_vec(),
        Kind::U32 => (int(vals.first()?)? as u32).to_be_bytes().to_vec(),
        Kind::Text => match vals.first()? {
            ArgValue::Str(s) | ArgValue::Id(s) => s.as_bytes().to_vec(),
            _ => return None,
        },
        Kind::Routes => {
            // Pairs: destination prefix, then gateway.
            let mut out = Vec::new();
            for pair in vals.chunks(2) {
                let [dst, gw] = pair else { return None };
                let len = prefix_len(dst);
                let dst = (int(dst)? as u32).to_be_bytes();
                out.push(len);
                out.extend_from_slice(&dst[..usize::from(len).div_ceil(8)]);
                out.extend_from_slice(&(int(gw)? as u32).to_be_bytes());
            }
            out
        }
    })
}

/// The value of option `code` in a message's options, if present.
fn find_option(opts: &[u8], code: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = usize::from(*opts.get(i + 1)?);
                let value = opts.get(i + 2..i + 2 + len)?;
                if c == code {
                    return Some(value);
                }
                i += 2 + len;
            }
        }
    }
    None
}

fn push_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    // Longer values are split into several instances (RFC 3396).
    for chunk in value.chunks(255) {
        out.push(code);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

/// The reply to the DHCP message `request` (the UDP payload) with the
/// options of the `put_dhcp_opts` action.
pub fn reply(request: &[u8], options: &[(String, ArgValue)]) -> Result<Vec<u8>, DhcpError> {
    if request.len() < FIXED + 4 || request[0] != 1 || request[FIXED..FIXED + 4] != MAGIC {
        return Err(DhcpError::Malformed);
    }
    let opts = &request[FIXED + 4..];
    let kind = *find_option(opts, 53)
        .and_then(|v| v.first())
        .ok_or(DhcpError::Malformed)?;
    let get = |name: &str| options.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let offer = get("offerip")
        .and_then(int)
        .map(|i| i as u32)
        .ok_or(DhcpError::NoOffer)?;
    let ciaddr = u32::from_be_bytes([request[12], request[13], request[14], request[15]]);
    let reply_type = match kind {
        DISCOVER => OFFER,
        REQUEST => {
            let asked = find_option(opts, 50)
                .and_then(|v| v.try_into().ok())
                .map(u32::from_be_bytes)
                .unwrap_or(ciaddr);
            if asked == 0 || asked == offer {
                ACK
            } else {
                NAK
            }
        }
        INFORM => ACK,
        other => return Err(DhcpError::NoReply(other)),
    };
    let mut out = vec![0u8; FIXED];
    out[0] = 2; // BOOTREPLY
    out[1..3].copy_from_slice(&request[1..3]); // htype, hlen
    out[4..8].copy_from_slice(&request[4..8]); // xid
    out[10..12].copy_from_slice(&request[10..12]); // flags
    if kind == INFORM {
        out[12..16].copy_from_slice(&request[12..16]);
    } else if reply_type != NAK {
        out[16..20].copy_from_slice(&offer.to_be_bytes());
    }
    if let Some(next) = get("next_server").and_then(int) {
        out[20..24].copy_from_slice(&(next as u32).to_be_bytes());
    }
    out[24..28].copy_from_slice(&request[24..28]); // giaddr
    out[28..44].copy_from_slice(&request[28..44]); // chaddr
    out.extend_from_slice(&MAGIC);
    push_option(&mut out, 53, &[reply_type]);
    // The server identifier first: clients look for it.
    if let Some(v) = get("server_id").and_then(|v| encode(&Kind::Ips, v)) {
        push_option(&mut out, 54, &v);
    }
    if reply_type != NAK {
        for (name, value) in options {
            let Some((code, kind_of)) = option(name) else {
                continue;
            };
            // An INFORM gets configuration, not a lease.
            if code == 54 || (kind == INFORM && matches!(code, 51 | 58 | 59)) {
                continue;
            }
            if let Some(v) = encode(&kind_of, value) {
                push_option(&mut out, code, &v);
            }
        }
    }
    out.push(255);
    if out.len() < MIN_MESSAGE {
        out.resize(MIN_MESSAGE, 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_pipeline::lflow::lexer::{Constant, Format};

    fn ip(a: [u8; 4]) -> ArgValue {
        ArgValue::Int(Constant::new(u32::from_be_bytes(a).into(), Format::Ipv4))
    }

    fn num(n: u128) -> ArgValue {
        ArgValue::Int(Constant::new(n, Format::Decimal))
    }

    fn opts() -> Vec<(String, ArgValue)> {
        let mut route = Constant::new(0x1e00_0000, Format::Ipv4);
        route.mask = Some(0xffff_ff00);
        vec![
            ("offerip".into(), ip([10, 0, 0, 5])),
            ("lease_time".into(), num(3600)),
            ("netmask".into(), ip([255, 255, 255, 0])),
            ("router".into(), ip([10, 0, 0, 1])),
            ("server_id".into(), ip([10, 0, 0, 1])),
            (
                "dns_server".into(),
                ArgValue::Set(vec![ip([8, 8, 8, 8]), ip([8, 8, 4, 4])]),
            ),
            ("domain_name".into(), ArgValue::Str("example.org".into())),
            ("mtu".into(), num(1400)),
            (
                "classless_static_route".into(),
                ArgValue::Set(vec![ArgValue::Int(route), ip([10, 0, 0, 4])]),
            ),
            ("no_such_option".into(), num(1)),
        ]
    }

    /// A client's message of `kind`, asking for `asked` if given.
    fn request(kind: u8, asked: Option<[u8; 4]>) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = 1;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        m[10] = 0x80; // broadcast flag
        m[28..34].copy_from_slice(&[0x0a, 0, 0, 0, 0, 7]);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind]);
        if let Some(a) = asked {
            m.extend_from_slice(&[50, 4]);
            m.extend_from_slice(&a);
        }
        m.push(255);
        m
    }

    #[test]
    fn discover_gets_an_offer_with_the_options() {
        let r = reply(&request(DISCOVER, None), &opts()).unwrap();
        assert!(r.len() >= MIN_MESSAGE);
        assert_eq!(r[0], 2);
        assert_eq!(&r[4..8], &0xdead_beefu32.to_be_bytes(), "xid");
        assert_eq!(r[10], 0x80, "flags");
        assert_eq!(&r[16..20], &[10, 0, 0, 5], "yiaddr");
        assert_eq!(&r[28..34], &[0x0a, 0, 0, 0, 0, 7], "chaddr");
        let o = &r[FIXED + 4..];
        assert_eq!(find_option(o, 53), Some(&[OFFER][..]));
        assert_eq!(find_option(o, 54), Some(&[10, 0, 0, 1][..]));
        assert_eq!(find_option(o, 51), Some(&3600u32.to_be_bytes()[..]));
        assert_eq!(find_option(o, 1), Some(&[255, 255, 255, 0][..]));
        assert_eq!(find_option(o, 6), Some(&[8, 8, 8, 8, 8, 8, 4, 4][..]));
        assert_eq!(find_option(o, 15), Some(&b"example.org"[..]));
        assert_eq!(find_option(o, 26), Some(&1400u16.to_be_bytes()[..]));
        assert_eq!(
            find_option(o, 121),
            Some(&[24, 30, 0, 0, 10, 0, 0, 4][..]),
            "RFC 3442: length, significant octets, gateway"
        );
    }

    #[test]
    fn request_is_acked_or_refused() {
        let ack = reply(&request(REQUEST, Some([10, 0, 0, 5])), &opts()).unwrap();
        assert_eq!(find_option(&ack[FIXED + 4..], 53), Some(&[ACK][..]));
        let nak = reply(&request(REQUEST, Some([10, 0, 0, 9])), &opts()).unwrap();
        assert_eq!(find_option(&nak[FIXED + 4..], 53), Some(&[NAK][..]));
        assert_eq!(&nak[16..20], &[0; 4], "a NAK offers nothing");
        assert_eq!(find_option(&nak[FIXED + 4..], 51), None);
    }

    #[test]
    fn garbage_and_releases_get_no_reply() {
        assert_eq!(reply(&[], &opts()), Err(DhcpError::Malformed));
        assert_eq!(reply(&[1; 300], &opts()), Err(DhcpError::Malformed));
        assert_eq!(
            reply(&request(7, None), &opts()),
            Err(DhcpError::NoReply(7))
        );
        assert_eq!(
            reply(&request(DISCOVER, None), &[]),
            Err(DhcpError::NoOffer)
        );
        // Options running past the end.
        let mut m = request(DISCOVER, None);
        m.truncate(FIXED + 4);
        m.extend_from_slice(&[53, 9, 1]);
        assert_eq!(reply(&m, &opts()), Err(DhcpError::Malformed));
    }
}
