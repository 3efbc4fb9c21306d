//! Resource records (RFC 1035 §4.1.3): the types the zone serves (A, AAAA, CNAME, PTR,
//! SRV, SOA, NS, TXT) and MX, which upstream answers carry and whose name may be
//! compressed; every other type keeps its RDATA as bytes.

use super::WireError;
use super::codec::{Reader, Writer};
use super::name::Name;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A record (or question) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub u16);

impl RecordType {
    pub const A: Self = Self(1);
    pub const NS: Self = Self(2);
    pub const CNAME: Self = Self(5);
    pub const SOA: Self = Self(6);
    pub const PTR: Self = Self(12);
    pub const MX: Self = Self(15);
    pub const TXT: Self = Self(16);
    pub const AAAA: Self = Self(28);
    pub const SRV: Self = Self(33);
    pub const OPT: Self = Self(41);
    /// The question type asking for every type (`*`).
    pub const ANY: Self = Self(255);
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mnemonic = match *self {
            Self::A => "A",
            Self::NS => "NS",
            Self::CNAME => "CNAME",
            Self::SOA => "SOA",
            Self::PTR => "PTR",
            Self::MX => "MX",
            Self::TXT => "TXT",
            Self::AAAA => "AAAA",
            Self::SRV => "SRV",
            Self::OPT => "OPT",
            Self::ANY => "ANY",
            Self(other) => return write!(f, "TYPE{other}"),
        };
        f.write_str(mnemonic)
    }
}

/// A record (or question) class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class(pub u16);

impl Class {
    pub const IN: Self = Self(1);
    pub const CH: Self = Self(3);
    pub const ANY: Self = Self(255);
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IN => f.write_str("IN"),
            Self::CH => f.write_str("CH"),
            Self::ANY => f.write_str("ANY"),
            Self(other) => write!(f, "CLASS{other}"),
        }
    }
}

/// The data of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(Name),
    Cname(Name),
    Ptr(Name),
    Mx {
        preference: u16,
        exchange: Name,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    Soa {
        mname: Name,
        rname: Name,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// Character strings of up to 255 bytes each.
    Txt(Vec<Vec<u8>>),
    /// Any other type, its RDATA as received.
    Unknown {
        rtype: RecordType,
        data: Vec<u8>,
    },
}

impl RData {
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::AAAA,
            Self::Ns(_) => RecordType::NS,
            Self::Cname(_) => RecordType::CNAME,
            Self::Ptr(_) => RecordType::PTR,
            Self::Mx { .. } => RecordType::MX,
            Self::Srv { .. } => RecordType::SRV,
            Self::Soa { .. } => RecordType::SOA,
            Self::Txt(_) => RecordType::TXT,
            Self::Unknown { rtype, .. } => *rtype,
        }
    }

    /// Reads `len` bytes of RDATA of type `rtype` at the reader's position. The data must
    /// fill exactly `len` bytes (names in it may point elsewhere in the message).
    fn read(reader: &mut Reader<'_>, rtype: RecordType, len: usize) -> Result<Self, WireError> {
        let start = reader.position();
        let end = start + len;
        if reader.message().len() < end {
            return Err(WireError::Truncated { offset: start });
        }
        let data = match rtype {
            RecordType::A if len == 4 => Self::A(Ipv4Addr::from(reader.array::<4>()?)),
            RecordType::AAAA if len == 16 => Self::Aaaa(Ipv6Addr::from(reader.array::<16>()?)),
            RecordType::A | RecordType::AAAA => {
                return Err(WireError::RdataLength { rtype, offset: start });
            }
            RecordType::NS => Self::Ns(Name::read(reader)?),
            RecordType::CNAME => Self::Cname(Name::read(reader)?),
            RecordType::PTR => Self::Ptr(Name::read(reader)?),
            RecordType::MX => Self::Mx { preference: reader.u16()?, exchange: Name::read(reader)? },
            RecordType::SRV => Self::Srv {
                priority: reader.u16()?,
                weight: reader.u16()?,
                port: reader.u16()?,
                target: Name::read(reader)?,
            },
            RecordType::SOA => Self::Soa {
                mname: Name::read(reader)?,
                rname: Name::read(reader)?,
                serial: reader.u32()?,
                refresh: reader.u32()?,
                retry: reader.u32()?,
                expire: reader.u32()?,
                minimum: reader.u32()?,
            },
            RecordType::TXT => {
                let mut strings = Vec::new();
                while reader.position() < end {
                    let len = reader.u8()?;
                    strings.push(reader.bytes(usize::from(len))?.to_vec());
                }
                Self::Txt(strings)
            }
            _ => Self::Unknown { rtype, data: reader.bytes(len)?.to_vec() },
        };
        if reader.position() != end {
            return Err(WireError::RdataLength { rtype, offset: start });
        }
        Ok(data)
    }

    /// Writes the RDATA (without its length).
    fn write(&self, writer: &mut Writer) -> Result<(), WireError> {
        match self {
            Self::A(ip) => writer.bytes(&ip.octets()),
            Self::Aaaa(ip) => writer.bytes(&ip.octets()),
            Self::Ns(name) | Self::Cname(name) | Self::Ptr(name) => writer.name(name, true),
            Self::Mx { preference, exchange } => {
                writer.u16(*preference);
                writer.name(exchange, true);
            }
            Self::Srv { priority, weight, port, target } => {
                writer.u16(*priority);
                writer.u16(*weight);
                writer.u16(*port);
                // RFC 2782: the target is never compressed.
                writer.name(target, false);
            }
            Self::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
                writer.name(mname, true);
                writer.name(rname, true);
                for value in [serial, refresh, retry, expire, minimum] {
                    writer.u32(*value);
                }
            }
            Self::Txt(strings) => {
                for string in strings {
                    let len = u8::try_from(string.len())
                        .map_err(|_| WireError::StringTooLong { len: string.len() })?;
                    writer.u8(len);
                    writer.bytes(string);
                }
            }
            Self::Unknown { data, .. } => writer.bytes(data),
        }
        Ok(())
    }
}

/// The presentation form of the data, as in a zone file (RFC 3597's `\# len hex` for types
/// without one here).
impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A(ip) => write!(f, "{ip}"),
            Self::Aaaa(ip) => write!(f, "{ip}"),
            Self::Ns(name) | Self::Cname(name) | Self::Ptr(name) => write!(f, "{name}"),
            Self::Mx { preference, exchange } => write!(f, "{preference} {exchange}"),
            Self::Srv { priority, weight, port, target } => {
                write!(f, "{priority} {weight} {port} {target}")
            }
            Self::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
                write!(f, "{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}")
            }
            Self::Txt(strings) => {
                for (index, string) in strings.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str("\"")?;
                    for &byte in string {
                        match byte {
                            b'"' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                            0x20..=0x7E => write!(f, "{}", char::from(byte))?,
                            _ => write!(f, "\\{byte:03}")?,
                        }
                    }
                    f.write_str("\"")?;
                }
                Ok(())
            }
            Self::Unknown { data, .. } => {
                write!(f, "\\# {}", data.len())?;
                if !data.is_empty() {
                    f.write_str(" ")?;
                }
                data.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub class: Class,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    /// A record of class IN.
    pub fn new(name: Name, ttl: u32, data: RData) -> Self {
        Self { name, class: Class::IN, ttl, data }
    }

    pub fn record_type(&self) -> RecordType {
        self.data.record_type()
    }

    /// Reads a record at the reader's position. An OPT record comes back with its options
    /// as unknown data; the message gives its class and TTL their EDNS meaning.
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = Name::read(reader)?;
        let rtype = RecordType(reader.u16()?);
        let class = Class(reader.u16()?);
        let ttl = reader.u32()?;
        let len = usize::from(reader.u16()?);
        let data = RData::read(reader, rtype, len)?;
        Ok(Self { name, class, ttl, data })
    }

    pub(crate) fn write(&self, writer: &mut Writer) -> Result<(), WireError> {
        writer.name(&self.name, true);
        writer.u16(self.record_type().0);
        writer.u16(self.class.0);
        writer.u32(self.ttl);
        write_rdata(writer, |writer| self.data.write(writer))
    }
}

/// Writes RDATA behind its two-byte length.
pub(crate) fn write_rdata(
    writer: &mut Writer,
    data: impl FnOnce(&mut Writer) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let at = writer.len();
    writer.u16(0);
    data(writer)?;
    let len = writer.len() - at - 2;
    let len = u16::try_from(len).map_err(|_| WireError::TooLarge { len })?;
    writer.patch_u16(at, len);
    Ok(())
}

/// The presentation form of a record: owner, TTL, class, type, data.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {} {}", self.name, self.ttl, self.class, self.record_type(), self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn round_trip(record: &Record) -> Record {
        let mut writer = Writer::default();
        record.write(&mut writer).unwrap();
        let bytes = writer.finish().unwrap();
        let mut reader = Reader::new(&bytes);
        let read = Record::read(&mut reader).unwrap();
        assert_eq!(reader.position(), bytes.len());
        read
    }

    #[test]
    fn every_type_round_trips() {
        let owner = name("x.example");
        for data in [
            RData::A(Ipv4Addr::new(10, 43, 0, 1)),
            RData::Aaaa("fd00::10".parse().unwrap()),
            RData::Ns(name("ns.x.example")),
            RData::Cname(name("y.example")),
            RData::Ptr(name("x.example")),
            RData::Mx { preference: 10, exchange: name("mail.x.example") },
            RData::Srv { priority: 0, weight: 100, port: 443, target: name("x.example") },
            RData::Soa {
                mname: name("ns.x.example"),
                rname: name("hostmaster.x.example"),
                serial: 42,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: 5,
            },
            RData::Txt(vec![b"1.1.0".to_vec(), Vec::new(), vec![b'z'; 255]]),
            RData::Txt(Vec::new()),
            RData::Unknown { rtype: RecordType(65), data: vec![0, 1, 2] },
            RData::Unknown { rtype: RecordType(99), data: Vec::new() },
        ] {
            let record = Record { class: Class(3), ..Record::new(owner.clone(), 60, data) };
            assert_eq!(round_trip(&record), record);
        }
    }

    #[test]
    fn rendering() {
        let render = |data: RData| Record::new(name("x.example"), 5, data).to_string();
        assert_eq!(render(RData::A(Ipv4Addr::new(10, 0, 0, 1))), "x.example. 5 IN A 10.0.0.1");
        assert_eq!(
            render(RData::Srv { priority: 0, weight: 100, port: 53, target: name("y.example") }),
            "x.example. 5 IN SRV 0 100 53 y.example."
        );
        assert_eq!(
            render(RData::Txt(vec![b"a \"b\"".to_vec(), vec![7]])),
            "x.example. 5 IN TXT \"a \\\"b\\\"\" \"\\007\""
        );
        assert_eq!(
            render(RData::Unknown { rtype: RecordType(65), data: vec![0xab, 1] }),
            "x.example. 5 IN TYPE65 \\# 2 ab01"
        );
    }

    #[test]
    fn data_must_fill_its_length() {
        let read = |bytes: &[u8]| Record::read(&mut Reader::new(bytes));
        // An A record of 5 bytes, a CNAME whose name runs past its length, a TXT string
        // longer than the data, data longer than the message.
        assert!(matches!(
            read(b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x05\x0a\x00\x00\x01\x00"),
            Err(WireError::RdataLength { rtype: RecordType::A, .. })
        ));
        assert!(matches!(
            read(b"\x00\x00\x05\x00\x01\x00\x00\x00\x05\x00\x02\x01a\x00"),
            Err(WireError::RdataLength { rtype: RecordType::CNAME, .. })
        ));
        assert!(matches!(
            read(b"\x00\x00\x10\x00\x01\x00\x00\x00\x05\x00\x02\x05abcde"),
            Err(WireError::RdataLength { rtype: RecordType::TXT, .. })
        ));
        assert_eq!(
            read(b"\x00\x00\x63\x00\x01\x00\x00\x00\x05\x00\x09abc"),
            Err(WireError::Truncated { offset: 11 })
        );
        // A string longer than 255 bytes cannot be written.
        let mut writer = Writer::default();
        let long = Record::new(Name::root(), 5, RData::Txt(vec![vec![b'z'; 256]]));
        assert_eq!(long.write(&mut writer), Err(WireError::StringTooLong { len: 256 }));
    }
}
