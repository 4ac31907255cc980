//! DNS answers for `dns_lookup` (what ovn-controller's pinctrl does with
//! the NB's DNS records): an A or AAAA query for a name the switch's DNS
//! rows know gets an authoritative answer with its addresses.
//!
//! Pure functions over bytes: the query's DNS message in, the response's
//! out (the caller wraps it in UDP/IP/Ethernet).

use std::net::IpAddr;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// How long resolvers may keep the answer: the records change only when
/// the NB does.
const TTL: u32 = 3600;

/// A parsed question: the name (lower case, no trailing dot), its type,
/// and where the question section ends in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    end: usize,
}

/// The single question of a standard query, if `msg` is one.
pub fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    // A query (QR 0), standard opcode, one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // Compression has no place in a question; refuse it.
        if len > 63 {
            return None;
        }
        let label = msg.get(i..i + len)?;
        labels.push(std::str::from_utf8(label).ok()?.to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let _class = msg.get(i + 2..i + 4)?;
    Some(Question {
        name: labels.join("."),
        qtype,
        end: i + 4,
    })
}

/// The addresses of `addrs` an answer to `q` carries: IPv4 for A, IPv6
/// for AAAA, none for other types.
pub fn matching(q: &Question, addrs: &[IpAddr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|a| match a {
            IpAddr::V4(_) => q.qtype == TYPE_A,
            IpAddr::V6(_) => q.qtype == TYPE_AAAA,
        })
        .collect()
}

/// The response to `query` (whose question is `q`) with `addrs`.
pub fn response(query: &[u8], q: &Question, addrs: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + addrs.len() * 28);
    out.extend_from_slice(&query[0..2]); // id
                                         // QR, the query's opcode (0) and RD, AA; no error.
    out.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x00]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.end]);
    for a in addrs {
        out.extend_from_slice(&[0xc0, 12]); // the question's name
        let (qtype, rdata): (u16, Vec<u8>) = match a {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    #[test]
    fn a_query_is_answered() {
        let m = query("A1.ovn.org", TYPE_A);
        let q = question(&m).unwrap();
        assert_eq!(q.name, "a1.ovn.org");
        let addrs: Vec<IpAddr> = vec!["10.6.1.10".parse().unwrap(), "fd00::a".parse().unwrap()];
        let answer = matching(&q, &addrs);
        assert_eq!(answer, vec!["10.6.1.10".parse::<IpAddr>().unwrap()]);
        let r = response(&m, &q, &answer);
        assert_eq!(&r[0..2], &[0xbe, 0xef]);
        assert_eq!(r[2] & 0x84, 0x84, "a response, authoritative");
        assert_eq!(r[2] & 1, 1, "recursion desired copied");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 6, 1, 10]);
    }

    #[test]
    fn garbage_is_no_question() {
        assert_eq!(question(&[]), None);
        assert_eq!(question(&[0; 11]), None);
        let mut m = query("x.org", TYPE_A);
        m[2] = 0x81; // a response, not a query
        assert_eq!(question(&m), None);
        let mut m = query("x.org", TYPE_A);
        m.truncate(15);
        assert_eq!(question(&m), None);
        let mut m = query("x.org", TYPE_A);
        m[12] = 0xc0; // a compression pointer
        assert_eq!(question(&m), None);
    }
}
