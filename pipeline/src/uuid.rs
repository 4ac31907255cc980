//! 128-bit row identifiers as OVSDB writes them (`8-4-4-4-12` hex).

use std::fmt;
use std::str::FromStr;

/// An OVSDB row UUID.
///
/// Stored as bytes rather than text because the logical network holds one
/// per logical flow and compares them constantly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

/// Text that is not a UUID in `8-4-4-4-12` hex form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUuidError(pub String);

impl fmt::Display for ParseUuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a UUID (want 8-4-4-4-12 hex digits): {:?}", self.0)
    }
}

impl std::error::Error for ParseUuidError {}

impl Uuid {
    /// Groups of hex digits between dashes.
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];

    /// The first 8 hex digits, as `ovn-sbctl` and `ovn-trace` abbreviate.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl FromStr for Uuid {
    type Err = ParseUuidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseUuidError(s.to_string());
        let groups: Vec<&str> = s.split('-').collect();
        if groups.len() != Self::GROUPS.len()
            || groups.iter().zip(Self::GROUPS).any(|(g, n)| g.len() != n)
        {
            return Err(err());
        }
        let hex: String = groups.concat();
        // from_str_radix alone would accept a leading '+'.
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Uuid(bytes))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        let text = "d034f42f-6dd5-4ba9-bfdd-114ce17c9235";
        let u: Uuid = text.parse().unwrap();
        assert_eq!(u.to_string(), text);
        assert_eq!(u.short(), "d034f42f");
        assert_eq!(text.to_uppercase().parse::<Uuid>().unwrap(), u);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "d034f42f6dd54ba9bfdd114ce17c9235",
            "d034f42f-6dd5-4ba9-bfdd-114ce17c923",
            "g034f42f-6dd5-4ba9-bfdd-114ce17c9235",
            "d034f42f-6dd5-4ba9-bfdd-114ce17c9235-",
            "+034f42f-6dd5-4ba9-bfdd-114ce17c9235",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
    }
}
