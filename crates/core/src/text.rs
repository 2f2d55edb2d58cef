//! Bytes shown as text in recordings: valid UTF-8 is kept as is, anything else gets
//! U+FFFD replacement characters.
//!
//! `String::from_utf8_lossy` checks its input one byte at a time; response and request
//! body excerpts are nearly always valid UTF-8, which `std::str::from_utf8` confirms a word
//! at a time, so these try that first and fall back to the lossy conversion.

/// `bytes` as a `String`, without copying when they are valid UTF-8.
pub fn lossy_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// `bytes` copied into a `String`, invalid sequences replaced.
pub fn lossy_str(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_text_is_kept_and_invalid_bytes_are_replaced() {
        assert_eq!(lossy_string(b"caf\xc3\xa9".to_vec()), "café");
        assert_eq!(lossy_str(b"caf\xc3\xa9"), "café");
        assert_eq!(lossy_string(b"a\xffb".to_vec()), "a\u{fffd}b");
        assert_eq!(lossy_str(b"a\xc3"), "a\u{fffd}");
        assert_eq!(lossy_str(b""), "");
    }
}
