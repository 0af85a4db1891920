//! Lowercase hexadecimal, the one text form of hashes, keys and encoded values at the edges
//! (API, CLI, key files).

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of an even-length hex string; `None` for anything else.
/// Strict: lower-case digits only, as [`encode`] writes them (`u8::from_str_radix` alone also
/// takes "+f" and upper case, so two spellings of one id would both parse).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Exactly `N` bytes of hex.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    decode(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_junk() {
        assert_eq!(super::encode(&[0, 1, 0xab, 0xff]), "0001abff");
        assert_eq!(super::decode("0001abff"), Some(vec![0, 1, 0xab, 0xff]));
        for junk in ["0", "zz", "é1", "0x12", "0001abFF", "+0+1", "-1"] {
            assert_eq!(super::decode(junk), None, "{junk}");
        }
        assert_eq!(super::decode_array::<2>("0102"), Some([1, 2]));
        assert_eq!(super::decode_array::<2>("010203"), None);
    }
}
