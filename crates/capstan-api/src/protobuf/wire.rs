//! The protobuf wire format, read: a field's tag, then a varint, a 64-bit or 32-bit value or
//! a length-delimited payload. Every read checks bounds, so a truncated body or a length
//! past the end is an error, never a panic or an allocation of the claimed size.

use super::DecodeError;

/// One field's value as the wire carries it, before a descriptor says what it means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Strings, bytes, embedded messages, map entries and packed repeated scalars.
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type's name, for error messages.
    pub(super) fn wire_type(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// Reads the fields of one message, in order.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    /// The next field's number and value, or `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, DecodeError> {
        if self.position == self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3)
            .ok()
            .filter(|&number| number != 0 && number < (1 << 29))
            .ok_or_else(|| DecodeError(format!("invalid protobuf field number {}", tag >> 3)))?;
        let value = match tag & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.array()?)),
            2 => {
                let length = self.varint()?;
                let remaining = self.bytes.len() - self.position;
                let length = usize::try_from(length)
                    .ok()
                    .filter(|&length| length <= remaining)
                    .ok_or_else(|| {
                        DecodeError(format!(
                            "protobuf field {number} claims {length} bytes, {remaining} remain"
                        ))
                    })?;
                let payload = &self.bytes[self.position..self.position + length];
                self.position += length;
                WireValue::Bytes(payload)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.array()?)),
            3 | 4 => {
                return Err(DecodeError(format!(
                    "protobuf field {number} is a group, which Kubernetes messages never use"
                )));
            }
            other => {
                return Err(DecodeError(format!(
                    "protobuf field {number} has invalid wire type {other}"
                )));
            }
        };
        Ok(Some((number, value)))
    }

    /// A base-128 varint of at most ten bytes.
    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(DecodeError("truncated protobuf varint".into()));
            };
            self.position += 1;
            if shift == 63 && byte > 1 {
                return Err(DecodeError("protobuf varint overflows 64 bits".into()));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("protobuf varint overflows 64 bits".into()))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.position + N;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or_else(|| DecodeError("truncated protobuf fixed-width value".into()))?;
        self.position = end;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    /// A packed fixed-width element of a packed repeated field.
    pub(super) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn fixed32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, DecodeError> {
        let mut reader = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(field) = reader.next_field()? {
            out.push(field);
        }
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 2, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        assert_eq!(
            fields(&bytes).unwrap(),
            [
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Bytes(b"hi")),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn refuses_what_is_malformed() {
        for (bytes, message) in [
            (&[0x0a, 0x05, b'a'][..], "protobuf field 1 claims 5 bytes, 1 remain"),
            (
                &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
                "protobuf field 1 claims 4294967295 bytes, 0 remain",
            ),
            (&[0x08][..], "truncated protobuf varint"),
            (&[0x08, 0x80][..], "truncated protobuf varint"),
            (
                &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
                "protobuf varint overflows 64 bits",
            ),
            (&[0x0b][..], "protobuf field 1 is a group, which Kubernetes messages never use"),
            (&[0x0e][..], "protobuf field 1 has invalid wire type 6"),
            (&[0x00][..], "invalid protobuf field number 0"),
            (&[0x09, 1, 2][..], "truncated protobuf fixed-width value"),
        ] {
            assert_eq!(fields(bytes), Err(DecodeError(message.into())), "{bytes:?}");
        }
    }

    #[test]
    fn the_largest_varint_is_read() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&bytes).varint(), Ok(u64::MAX));
    }
}
