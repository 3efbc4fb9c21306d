//! Standard base64 with padding, as Go's `encoding/json` writes and reads `[]byte` fields
//! (a Secret's `data`, a ConfigMap's `binaryData`): decoding reports the first bad byte the
//! way Go's `base64.CorruptInputError` does.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` with padding.
pub(super) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(byte: u8) -> Option<u32> {
    ALPHABET.iter().position(|&c| c == byte).map(|p| p as u32)
}

/// Decodes padded standard base64. The error is Go's message: `illegal base64 data at input
/// byte N`. Go skips carriage returns and newlines, and so does this.
pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
    let corrupt = |at: usize| format!("illegal base64 data at input byte {at}");
    let input: Vec<(usize, u8)> =
        text.bytes().enumerate().filter(|(_, b)| *b != b'\r' && *b != b'\n').collect();
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    for (group_index, group) in input.chunks(4).enumerate() {
        let mut n = 0u32;
        let mut data = 0;
        for (position, &(at, byte)) in group.iter().enumerate() {
            if byte == b'=' {
                // Padding may only end the last group, after at least two data characters.
                let rest_is_padding = group[position..].iter().all(|(_, b)| *b == b'=');
                let last = (group_index + 1) * 4 >= input.len();
                if position < 2 || !rest_is_padding || !last || group.len() != 4 {
                    return Err(corrupt(at));
                }
                break;
            }
            let value = sextet(byte).ok_or_else(|| corrupt(at))?;
            n |= value << (18 - 6 * position);
            data += 1;
        }
        if data < 4 && group.len() < 4 {
            // An unpadded short final group.
            return Err(corrupt(text.len()));
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..data]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "a\u{0}b"] {
            let encoded = encode(text.as_bytes());
            assert_eq!(decode(&encoded).unwrap(), text.as_bytes(), "{encoded}");
        }
        assert_eq!(encode(b"admin"), "YWRtaW4=");
    }

    #[test]
    fn reports_the_first_bad_byte_as_go() {
        assert_eq!(decode("YWRt!W4=").unwrap_err(), "illegal base64 data at input byte 4");
        assert_eq!(decode("YWRtaW4").unwrap_err(), "illegal base64 data at input byte 7");
        assert_eq!(decode("Y===").unwrap_err(), "illegal base64 data at input byte 1");
        assert!(decode("YWRtaW4=\n").is_ok());
    }
}
