//! Splits an OVSDB byte stream into JSON messages.
//!
//! RFC 7047 sends JSON-RPC objects back to back with no length prefix or
//! delimiter, so the only way to find a message's end is to track bracket
//! depth outside strings. The scanner keeps its place between reads: an
//! initial monitor reply of tens of megabytes arrives in thousands of reads
//! and must not be rescanned from the start each time.

use std::fmt;

/// The stream can no longer be split; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// A byte that cannot start or continue a JSON-RPC message.
    Garbage { byte: u8, offset: usize },
    /// A message longer than the configured limit.
    TooLong { limit: usize },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::Garbage { byte, offset } => write!(
                f,
                "stream out of sync: unexpected byte 0x{byte:02x} at offset {offset} between messages"
            ),
            FramingError::TooLong { limit } => {
                write!(f, "message longer than the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// Incremental scanner over a growing buffer; see the module docs.
#[derive(Debug, Clone)]
pub struct JsonSplitter {
    /// Bytes of the current buffer already scanned.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    limit: usize,
}

impl JsonSplitter {
    pub fn new(limit: usize) -> Self {
        JsonSplitter {
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            limit,
        }
    }

    /// Scans `buf` (which starts where the previous message ended and has
    /// only grown since the last call) and returns `Some(end)` when
    /// `buf[..end]` holds one whole message. Leading whitespace is part of
    /// it. After `Some`, the caller removes `buf[..end]` and the scanner
    /// starts afresh.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FramingError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.pos;
                        *self = JsonSplitter::new(self.limit);
                        return Ok(Some(end));
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                // Scalars only ever appear inside a message.
                _ if self.depth > 0 => {}
                _ => {
                    return Err(FramingError::Garbage {
                        byte: b,
                        offset: self.pos - 1,
                    })
                }
            }
        }
        if self.pos > self.limit {
            return Err(FramingError::TooLong { limit: self.limit });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], chunk: usize) -> Result<Vec<String>, FramingError> {
        let mut splitter = JsonSplitter::new(1 << 20);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(end) = splitter.scan(&buf)? {
                out.push(
                    String::from_utf8(buf.drain(..end).collect())
                        .unwrap()
                        .trim()
                        .to_string(),
                );
            }
        }
        Ok(out)
    }

    #[test]
    fn splits_back_to_back_messages_in_any_chunking() {
        let input = br#"{"id":1,"result":{"a":"}{\"]"}} {"method":"echo","params":[],"id":"x"}
[1,[2]]"#;
        for chunk in [1, 2, 3, 7, 1000] {
            let msgs = split_all(input, chunk).unwrap();
            assert_eq!(msgs.len(), 3, "chunk {chunk}");
            assert_eq!(msgs[0], r#"{"id":1,"result":{"a":"}{\"]"}}"#);
            assert_eq!(msgs[2], "[1,[2]]");
        }
    }

    #[test]
    fn refuses_garbage_between_messages() {
        let err = split_all(b"{} x{}", 100).unwrap_err();
        assert_eq!(
            err,
            FramingError::Garbage {
                byte: b'x',
                offset: 1
            }
        );
        assert!(split_all(b"}", 1).is_err());
    }

    #[test]
    fn limits_message_length() {
        let mut s = JsonSplitter::new(8);
        assert_eq!(
            s.scan(b"{\"aaaaaaaaaaaa"),
            Err(FramingError::TooLong { limit: 8 })
        );
    }

    #[test]
    fn keeps_partial_state() {
        let mut s = JsonSplitter::new(100);
        assert_eq!(s.scan(b"{\"a\\"), Ok(None));
        assert_eq!(s.scan(b"{\"a\\\"}\"}"), Ok(Some(8)));
    }
}
