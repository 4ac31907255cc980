//! Deterministic mangling of real input, for tests that nothing panics on
//! malformed text (cargo fuzz explores further; see scripts/fuzz.sh).

/// Bytes that tend to upset a parser of this language.
const ALPHABET: &[u8] = b"(){}[]!=<>&|.,:;$@\"\\/*-0x1fz_ \xc3\xa9";

/// `rounds` variants of the corpus lines, each with one to three bytes
/// flipped, dropped or inserted; the same every run.
pub fn mangled(corpus: &str, rounds: usize) -> impl Iterator<Item = String> + '_ {
    let lines: Vec<&str> = corpus.lines().filter(|l| !l.is_empty()).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    (0..rounds).map(move |round| {
        let mut bytes = lines[round % lines.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = next() % (bytes.len() + 1);
            let byte = ALPHABET[next() % ALPHABET.len()];
            match next() % 3 {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        // A mutation may split a UTF-8 sequence; the parsers take &str.
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
