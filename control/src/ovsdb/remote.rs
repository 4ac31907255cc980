//! OVSDB remotes written the way OVN writes them: `unix:PATH`, `tcp:IP:PORT`,
//! several separated by commas for a clustered database.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// A remote spelled in a way ironflow cannot use; the message says how to
/// spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError(pub String);

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RemoteError {}

impl FromStr for Remote {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = |why: &str| {
            RemoteError(format!(
                "bad OVSDB remote {s:?}: {why} (write unix:PATH or tcp:IP:PORT)"
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| err("no method"))?;
        match kind {
            "unix" if !rest.is_empty() => Ok(Remote::Unix(PathBuf::from(rest))),
            "unix" => Err(err("empty path")),
            "tcp" => {
                // tcp:[IPv6]:PORT or tcp:IPv4:PORT, as OVS writes them.
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = host.parse().map_err(|_| err("not an IP address"))?;
                let port: u16 = port.parse().map_err(|_| err("bad port"))?;
                Ok(Remote::Tcp(SocketAddr::new(ip, port)))
            }
            "ssl" => Err(err("ssl: is not supported yet")),
            "punix" | "ptcp" | "pssl" => Err(err("that is a listening remote; ironflow connects")),
            _ => Err(err("unknown method")),
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Unix(path) => write!(f, "unix:{}", path.display()),
            Remote::Tcp(SocketAddr::V4(a)) => write!(f, "tcp:{}:{}", a.ip(), a.port()),
            Remote::Tcp(SocketAddr::V6(a)) => write!(f, "tcp:[{}]:{}", a.ip(), a.port()),
        }
    }
}

/// Parses a comma-separated list of remotes (the members of a cluster).
pub fn parse_remotes(s: &str) -> Result<Vec<Remote>, RemoteError> {
    let remotes: Vec<Remote> = s
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if remotes.is_empty() {
        return Err(RemoteError(
            "no OVSDB remote given (write unix:PATH or tcp:IP:PORT)".into(),
        ));
    }
    Ok(remotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ovn_spellings() {
        let r =
            parse_remotes("unix:/run/ovn/ovnsb_db.sock,tcp:127.0.0.1:6642,tcp:[::1]:6642").unwrap();
        assert_eq!(r[0], Remote::Unix("/run/ovn/ovnsb_db.sock".into()));
        assert_eq!(r[1].to_string(), "tcp:127.0.0.1:6642");
        assert_eq!(r[2].to_string(), "tcp:[::1]:6642");
    }

    #[test]
    fn explains_bad_remotes() {
        for (bad, hint) in [
            ("/run/sb.sock", "no method"),
            ("tcp:127.0.0.1", "no port"),
            ("tcp:localhost:6642", "not an IP"),
            ("ptcp:6642", "listening"),
            ("ssl:1.2.3.4:6642", "not supported"),
            ("unix:", "empty path"),
        ] {
            let e = bad.parse::<Remote>().unwrap_err();
            assert!(
                e.0.contains(hint) && e.0.contains("unix:PATH"),
                "{bad}: {e}"
            );
        }
        assert!(parse_remotes(" , ").is_err());
    }
}
