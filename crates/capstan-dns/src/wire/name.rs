//! Domain names: labels of bytes, always fully qualified, compared case-insensitively
//! (ASCII only; no IDNA: a label is the bytes it holds).

use super::codec::Reader;
use super::{MAX_LABEL, MAX_NAME, WireError};
use std::fmt;
use std::hash::{Hash, Hasher};

/// The most compression pointers one name may follow. A name has at most 127 labels, and a
/// sane encoder never points at a pointer, so real names stay far below; the bound keeps a
/// hostile message from making every name walk a long chain.
pub(crate) const MAX_POINTERS: usize = 128;

/// A fully qualified domain name, held in uncompressed wire form: each label behind its
/// length byte, then the root's zero. Every constructor checks the limits, so a `Name` is
/// always well-formed: labels of 1 to 63 bytes, at most 255 bytes in all.
#[derive(Clone, Eq)]
pub struct Name {
    wire: Vec<u8>,
}

impl Name {
    /// The root, `.`.
    pub fn root() -> Self {
        Self { wire: vec![0] }
    }

    /// Parses a name in dotted form, with or without the trailing dot (`"."` is the root).
    /// Backslash escapes are not interpreted.
    pub fn from_ascii(text: &str) -> Result<Self, WireError> {
        if !text.is_ascii() {
            return Err(WireError::NotAscii { name: text.to_owned() });
        }
        if text == "." {
            return Ok(Self::root());
        }
        let mut wire = Vec::with_capacity(text.len() + 2);
        for label in text.strip_suffix('.').unwrap_or(text).split('.') {
            if label.is_empty() {
                return Err(WireError::EmptyLabel { name: text.to_owned() });
            }
            push_label(&mut wire, label.as_bytes())?;
        }
        wire.push(0);
        Ok(Self { wire })
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.wire == [0]
    }

    /// The labels, leftmost first (none for the root).
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.wire.as_slice();
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (label, tail) = tail.split_at_checked(usize::from(len))?;
            rest = tail;
            (len != 0).then_some(label)
        })
    }

    /// The uncompressed wire form.
    pub(crate) fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Reads a name at the reader's position, following compression pointers, and leaves the
    /// reader after it (after the first pointer, when there is one).
    ///
    /// Every pointer must point strictly before the start of the segment it ends (the name
    /// itself, or the place the previous pointer led to). Targets thus strictly decrease, so
    /// no loop exists; [`MAX_POINTERS`] bounds the work besides.
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let message = reader.message();
        let mut position = reader.position();
        let mut segment_start = position;
        let mut resume = None;
        let mut pointers = 0;
        let mut wire = Vec::with_capacity(32);
        loop {
            let byte = *message.get(position).ok_or(WireError::Truncated { offset: position })?;
            match byte & 0xC0 {
                0x00 if byte == 0 => break,
                0x00 => {
                    let start = position + 1;
                    let label = message
                        .get(start..start + usize::from(byte))
                        .ok_or(WireError::Truncated { offset: start })?;
                    push_label(&mut wire, label)?;
                    position = start + label.len();
                }
                0xC0 => {
                    let low = *message
                        .get(position + 1)
                        .ok_or(WireError::Truncated { offset: position + 1 })?;
                    let target = usize::from(byte & 0x3F) << 8 | usize::from(low);
                    if target >= segment_start {
                        return Err(WireError::BadPointer { offset: position });
                    }
                    pointers += 1;
                    if pointers > MAX_POINTERS {
                        return Err(WireError::TooManyPointers);
                    }
                    resume.get_or_insert(position + 2);
                    position = target;
                    segment_start = target;
                }
                // 0x40 and 0x80: extended and reserved label types (RFC 6891 §5).
                _ => return Err(WireError::BadLabel { offset: position, byte }),
            }
        }
        wire.push(0);
        reader.seek(resume.unwrap_or(position + 1));
        Ok(Self { wire })
    }
}

/// Appends one label, checking that it and the name (with the root still to come) fit.
fn push_label(wire: &mut Vec<u8>, label: &[u8]) -> Result<(), WireError> {
    let len = u8::try_from(label.len())
        .ok()
        .filter(|&len| usize::from(len) <= MAX_LABEL)
        .ok_or(WireError::LabelTooLong { len: label.len() })?;
    if wire.len() + 1 + label.len() + 1 > MAX_NAME {
        return Err(WireError::NameTooLong);
    }
    wire.push(len);
    wire.extend_from_slice(label);
    Ok(())
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        // Length bytes are at most 63, below the ASCII letters, so folding leaves them alone.
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for byte in &self.wire {
            state.write_u8(byte.to_ascii_lowercase());
        }
    }
}

/// The presentation form: labels joined by dots, with the trailing dot; dots and
/// backslashes inside labels escaped with a backslash, other bytes outside printable ASCII
/// as `\DDD`.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &byte in label {
                match byte {
                    b'.' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                    0x21..=0x7E => write!(f, "{}", char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(message: &[u8], at: usize) -> Result<(String, usize), WireError> {
        let mut reader = Reader::new(message);
        reader.seek(at);
        let name = Name::read(&mut reader)?;
        Ok((name.to_string(), reader.position()))
    }

    #[test]
    fn dotted_names() {
        let name = Name::from_ascii("Kubernetes.default.svc.cluster.local").unwrap();
        assert_eq!(name.to_string(), "Kubernetes.default.svc.cluster.local.");
        assert_eq!(name, Name::from_ascii("kubernetes.DEFAULT.svc.cluster.local.").unwrap());
        assert_ne!(name, Name::from_ascii("kubernetes.default.svc.cluster").unwrap());
        assert_eq!(name.labels().count(), 5);
        assert!(Name::from_ascii(".").unwrap().is_root());
        assert_eq!(Name::root().to_string(), ".");
        assert_eq!(Name::root().labels().count(), 0);
        for bad in ["", "a..b", ".a", "a.b..", "ä.example"] {
            assert!(Name::from_ascii(bad).is_err(), "{bad:?}");
        }
        let label = "x".repeat(63);
        assert!(Name::from_ascii(&label).is_ok());
        assert_eq!(
            Name::from_ascii(&format!("{label}x.example")),
            Err(WireError::LabelTooLong { len: 64 })
        );
        // 4 labels of 63 bytes need 4 * 64 + 1 = 257 bytes; 3 of them and one of 61 fit.
        let long = [label.as_str(); 4].join(".");
        assert_eq!(Name::from_ascii(&long), Err(WireError::NameTooLong));
        let longest = format!("{label}.{label}.{label}.{}", "y".repeat(61));
        assert_eq!(Name::from_ascii(&longest).unwrap().wire().len(), 255);
    }

    #[test]
    fn presentation_escapes() {
        let mut reader = Reader::new(b"\x04a.b\\\x03\x00 \x7F\x00");
        let name = Name::read(&mut reader).unwrap();
        assert_eq!(name.to_string(), "a\\.b\\\\.\\000\\032\\127.");
    }

    #[test]
    fn decompression() {
        // 0: example.com, 13: www -> 0, 19: mail -> www (a pointer to a pointer).
        let message = b"\x07example\x03com\x00\x03www\xC0\x00\x04mail\xC0\x0D";
        assert_eq!(read(message, 0), Ok(("example.com.".into(), 13)));
        assert_eq!(read(message, 13), Ok(("www.example.com.".into(), 19)));
        assert_eq!(read(message, 19), Ok(("mail.www.example.com.".into(), 26)));
        assert_eq!(read(b"\x00", 0), Ok((".".into(), 1)));
    }

    #[test]
    fn malformed_names() {
        // A pointer to itself, forward, and a loop through two pointers.
        assert_eq!(read(b"\xC0\x00", 0), Err(WireError::BadPointer { offset: 0 }));
        assert_eq!(read(b"\xC0\x02\x00", 0), Err(WireError::BadPointer { offset: 0 }));
        assert_eq!(
            read(b"\x01a\xC0\x05\x01b\xC0\x00", 4),
            Err(WireError::BadPointer { offset: 2 })
        );
        // A pointer into the name's own labels.
        assert_eq!(read(b"\x01a\x01b\xC0\x02", 0), Err(WireError::BadPointer { offset: 4 }));
        // Cut short: in a label, before the root, inside a pointer.
        assert_eq!(read(b"\x05ab", 0), Err(WireError::Truncated { offset: 1 }));
        assert_eq!(read(b"\x01a", 0), Err(WireError::Truncated { offset: 2 }));
        assert_eq!(read(b"\x01a\xC0", 0), Err(WireError::Truncated { offset: 3 }));
        // Label types 01 and 10 (a length of 64 or more).
        assert_eq!(read(b"\x40", 0), Err(WireError::BadLabel { offset: 0, byte: 0x40 }));
        assert_eq!(read(b"\x80", 0), Err(WireError::BadLabel { offset: 0, byte: 0x80 }));
        // Longer than 255 bytes once decompressed: 4 labels of 63 bytes, each segment
        // pointing at the one before.
        let mut message = Vec::new();
        let mut previous: Option<u16> = None;
        for _ in 0..4 {
            let start = u16::try_from(message.len()).unwrap();
            message.push(63);
            message.extend_from_slice(&[b'x'; 63]);
            match previous {
                Some(target) => message.extend_from_slice(&(0xC000 | target).to_be_bytes()),
                None => message.push(0),
            }
            previous = Some(start);
        }
        let last = usize::from(previous.unwrap());
        assert_eq!(read(&message, last), Err(WireError::NameTooLong));
        assert_eq!(read(&message, last - 66).map(|(name, _)| name.len()), Ok(3 * 64));
    }

    #[test]
    fn pointer_chains_are_bounded() {
        // The root at 0, then pointers at 1, 3, 5, ..., each to the one before it.
        let mut message = vec![0];
        for at in (1..400_u16).step_by(2) {
            message.extend_from_slice(&(0xC000 | at.saturating_sub(2)).to_be_bytes());
        }
        let last = message.len() - 2;
        assert_eq!(read(&message, last), Err(WireError::TooManyPointers));
        assert_eq!(read(&message, 1), Ok((".".into(), 3)));
    }
}
