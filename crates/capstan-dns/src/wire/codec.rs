//! The two cursors everything else is written with: [`Reader`], bounds-checked reads from a
//! whole message (names need the whole message to follow compression pointers), and
//! [`Writer`], a growing buffer that remembers where names were written so later ones can
//! point at them.

use super::name::Name;
use super::{MAX_MESSAGE, WireError};
use std::collections::HashMap;

/// Compression pointers have 14 bits: names written beyond this offset cannot be targets.
const MAX_POINTER_TARGET: usize = 0x3FFF;

/// Reads fields from a message, front to back.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    message: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Self { message, position: 0 }
    }

    /// The whole message, for following compression pointers.
    pub(crate) fn message(&self) -> &'a [u8] {
        self.message
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Moves to `position`, which a name read found as its end.
    pub(crate) fn seek(&mut self, position: usize) {
        self.position = position;
    }

    /// The next `len` bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let truncated = WireError::Truncated { offset: self.position };
        let end = self.position.checked_add(len).ok_or(truncated.clone())?;
        let bytes = self.message.get(self.position..end).ok_or(truncated)?;
        self.position = end;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let offset = self.position;
        self.bytes(N)?.try_into().map_err(|_| WireError::Truncated { offset })
    }
}

/// Writes a message, compressing names against those already written.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buffer: Vec<u8>,
    /// Where each name suffix written so far starts, keyed by its uncompressed wire form in
    /// lowercase (compression matches case-insensitively, as names compare).
    suffixes: HashMap<Vec<u8>, u16>,
}

impl Writer {
    pub(crate) fn len(&self) -> usize {
        self.buffer.len()
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buffer.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Overwrites the two bytes at `at`, written earlier as a placeholder.
    pub(crate) fn patch_u16(&mut self, at: usize, value: u16) {
        if let Some(slot) = self.buffer.get_mut(at..at + 2) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Writes `name`, ending in a pointer to the longest suffix written before when
    /// `compress`; either way its suffixes become targets for later names.
    pub(crate) fn name(&mut self, name: &Name, compress: bool) {
        let wire = name.wire();
        let mut start = 0;
        // Every suffix but the root: the root is one byte, a pointer two.
        while let Some(&len) = wire.get(start).filter(|&&len| len != 0) {
            let suffix = wire[start..].to_ascii_lowercase();
            if compress && let Some(&target) = self.suffixes.get(&suffix) {
                self.u16(0xC000 | target);
                return;
            }
            if let Ok(offset) = u16::try_from(self.buffer.len())
                && usize::from(offset) <= MAX_POINTER_TARGET
            {
                self.suffixes.entry(suffix).or_insert(offset);
            }
            let end = start + 1 + usize::from(len);
            self.bytes(&wire[start..end]);
            start = end;
        }
        self.u8(0);
    }

    /// The message, or why it cannot be sent.
    pub(crate) fn finish(self) -> Result<Vec<u8>, WireError> {
        if self.buffer.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge { len: self.buffer.len() });
        }
        Ok(self.buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u16(), Ok(0x0102));
        assert_eq!(reader.u16(), Err(WireError::Truncated { offset: 2 }));
        assert_eq!(reader.u8(), Ok(3));
        assert_eq!(reader.u8(), Err(WireError::Truncated { offset: 3 }));
        assert_eq!(reader.bytes(usize::MAX), Err(WireError::Truncated { offset: 3 }));
        assert_eq!(reader.bytes(0), Ok(&[][..]));
    }

    #[test]
    fn names_point_at_earlier_suffixes() {
        let mut writer = Writer::default();
        writer.bytes(&[0; 12]);
        writer.name(&Name::from_ascii("www.Example.com").unwrap(), true);
        writer.name(&Name::from_ascii("mail.example.COM.").unwrap(), true);
        writer.name(&Name::from_ascii("example.com").unwrap(), true);
        writer.name(&Name::from_ascii("other.example.com").unwrap(), false);
        writer.name(&Name::root(), true);
        let mut expected = vec![0; 12];
        expected.extend_from_slice(b"\x03www\x07Example\x03com\x00");
        expected.extend_from_slice(b"\x04mail\xC0\x10");
        expected.extend_from_slice(b"\xC0\x10");
        expected.extend_from_slice(b"\x05other\x07example\x03com\x00");
        expected.push(0);
        assert_eq!(writer.finish().unwrap(), expected);
    }

    #[test]
    fn targets_stop_at_the_pointer_range() {
        let mut writer = Writer::default();
        writer.bytes(&vec![0; 0x4000]);
        let name = Name::from_ascii("far.example").unwrap();
        writer.name(&name, true);
        writer.name(&name, true);
        let written = writer.finish().unwrap();
        assert_eq!(written[0x4000..], *b"\x03far\x07example\x00\x03far\x07example\x00");
    }

    #[test]
    fn messages_are_at_most_65535_bytes() {
        let mut writer = Writer::default();
        writer.bytes(&vec![0; MAX_MESSAGE + 1]);
        assert_eq!(writer.finish(), Err(WireError::TooLarge { len: MAX_MESSAGE + 1 }));
    }
}
