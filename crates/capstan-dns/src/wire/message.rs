//! Whole messages (RFC 1035 §4.1): the header, the question section, the three record
//! sections, and the EDNS0 OPT record (RFC 6891), which [`Message`] holds apart as
//! [`Edns`] rather than among the additional records.

use super::codec::{Reader, Writer};
use super::name::Name;
use super::record::{Class, RData, Record, RecordType, write_rdata};
use super::{HEADER_LEN, WireError};
use std::fmt;

/// The kind of query (RFC 1035 §4.1.1, four bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const QUERY: Self = Self(0);
    pub const IQUERY: Self = Self(1);
    pub const STATUS: Self = Self(2);
    pub const NOTIFY: Self = Self(4);
    pub const UPDATE: Self = Self(5);
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::QUERY => f.write_str("QUERY"),
            Self::IQUERY => f.write_str("IQUERY"),
            Self::STATUS => f.write_str("STATUS"),
            Self::NOTIFY => f.write_str("NOTIFY"),
            Self::UPDATE => f.write_str("UPDATE"),
            Self(other) => write!(f, "OPCODE{other}"),
        }
    }
}

/// The response code: four bits in the header, eight more in the OPT record when the
/// message has one (RFC 6891 §6.1.3), twelve in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rcode(pub u16);

impl Rcode {
    pub const NOERROR: Self = Self(0);
    pub const FORMERR: Self = Self(1);
    pub const SERVFAIL: Self = Self(2);
    pub const NXDOMAIN: Self = Self(3);
    pub const NOTIMP: Self = Self(4);
    pub const REFUSED: Self = Self(5);
    pub const BADVERS: Self = Self(16);
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NOERROR => f.write_str("NOERROR"),
            Self::FORMERR => f.write_str("FORMERR"),
            Self::SERVFAIL => f.write_str("SERVFAIL"),
            Self::NXDOMAIN => f.write_str("NXDOMAIN"),
            Self::NOTIMP => f.write_str("NOTIMP"),
            Self::REFUSED => f.write_str("REFUSED"),
            Self::BADVERS => f.write_str("BADVERS"),
            Self(other) => write!(f, "RCODE{other}"),
        }
    }
}

/// The header's fields, but the section counts (which follow from the sections). The
/// default is a query with ID 0, no flags, opcode QUERY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    /// QR: a response rather than a query.
    pub response: bool,
    pub opcode: Opcode,
    /// AA.
    pub authoritative: bool,
    /// TC.
    pub truncated: bool,
    /// RD.
    pub recursion_desired: bool,
    /// RA.
    pub recursion_available: bool,
    /// AD (RFC 4035).
    pub authentic_data: bool,
    /// CD (RFC 4035).
    pub checking_disabled: bool,
    /// With its EDNS bits when the message has an OPT record.
    pub rcode: Rcode,
}

impl Header {
    fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = reader.u16()?;
        let [first, second] = reader.array()?;
        Ok(Self {
            id,
            response: first & 0x80 != 0,
            opcode: Opcode((first >> 3) & 0x0F),
            authoritative: first & 0x04 != 0,
            truncated: first & 0x02 != 0,
            recursion_desired: first & 0x01 != 0,
            recursion_available: second & 0x80 != 0,
            authentic_data: second & 0x20 != 0,
            checking_disabled: second & 0x10 != 0,
            rcode: Rcode(u16::from(second & 0x0F)),
        })
    }

    /// The two flag bytes, with the low four bits of the response code.
    fn flags(&self) -> [u8; 2] {
        let bit = |set: bool, bit: u8| if set { bit } else { 0 };
        let first = bit(self.response, 0x80)
            | (self.opcode.0 & 0x0F) << 3
            | bit(self.authoritative, 0x04)
            | bit(self.truncated, 0x02)
            | bit(self.recursion_desired, 0x01);
        let [_, low] = (self.rcode.0 & 0x0F).to_be_bytes();
        let second = bit(self.recursion_available, 0x80)
            | bit(self.authentic_data, 0x20)
            | bit(self.checking_disabled, 0x10)
            | low;
        [first, second]
    }
}

/// One question: a name, the type asked for, and the class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: RecordType,
    pub qclass: Class,
}

impl Question {
    /// A question of class IN.
    pub fn new(name: Name, qtype: RecordType) -> Self {
        Self { name, qtype, qclass: Class::IN }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = Name::read(reader)?;
        let qtype = RecordType(reader.u16()?);
        let qclass = Class(reader.u16()?);
        Ok(Self { name, qtype, qclass })
    }
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, self.qclass, self.qtype)
    }
}

/// What a message's OPT record says (RFC 6891 §6.1), but the response code's upper bits,
/// which live in [`Header::rcode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP payload the sender can receive (the record's class).
    pub payload: u16,
    pub version: u8,
    /// DO: the sender wants DNSSEC records (RFC 3225).
    pub dnssec_ok: bool,
    /// The options, as received: code, length and data each.
    pub options: Vec<u8>,
}

impl Edns {
    /// Version 0, no DO bit, no options.
    pub fn new(payload: u16) -> Self {
        Self { payload, version: 0, dnssec_ok: false, options: Vec::new() }
    }

    /// Reads an OPT record; returns the response code's upper eight bits beside.
    fn from_record(record: Record) -> Result<(Self, u8), WireError> {
        if !record.name.is_root() {
            return Err(WireError::OptOwner);
        }
        let options = match record.data {
            RData::Unknown { data, .. } => data,
            // The reader keeps unknown types as bytes, and OPT is one of them.
            _ => Vec::new(),
        };
        let mut rest = options.as_slice();
        while !rest.is_empty() {
            let len = match rest {
                [_, _, high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
                _ => return Err(WireError::BadOptions),
            };
            rest = rest.get(4 + len..).ok_or(WireError::BadOptions)?;
        }
        let [rcode_high, version, flags, _] = record.ttl.to_be_bytes();
        let edns = Self { payload: record.class.0, version, dnssec_ok: flags & 0x80 != 0, options };
        Ok((edns, rcode_high))
    }

    fn write(&self, writer: &mut Writer, rcode: Rcode) -> Result<(), WireError> {
        writer.u8(0);
        writer.u16(RecordType::OPT.0);
        writer.u16(self.payload);
        let [_, rcode_high] = (rcode.0 >> 4).to_be_bytes();
        let flags = if self.dnssec_ok { 0x80 } else { 0 };
        writer.u32(u32::from_be_bytes([rcode_high, self.version, flags, 0]));
        write_rdata(writer, |writer| {
            writer.bytes(&self.options);
            Ok(())
        })
    }
}

/// A DNS message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    /// The additional records, without the OPT record.
    pub additionals: Vec<Record>,
    /// The OPT record, when the message has one.
    pub edns: Option<Edns>,
}

impl Message {
    /// Parses a message. Fails on anything malformed: a section shorter than its count, a
    /// name or record data that does not fit, an OPT record outside the additional section,
    /// twice, or not owned by the root. Bytes after the last section are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let mut header = Header::read(&mut reader)?;
        let [questions, answers, authorities, additionals] =
            [reader.u16()?, reader.u16()?, reader.u16()?, reader.u16()?];
        debug_assert_eq!(reader.position(), HEADER_LEN);
        let questions =
            (0..questions).map(|_| Question::read(&mut reader)).collect::<Result<_, _>>()?;
        let answers = read_section(&mut reader, answers)?;
        let authorities = read_section(&mut reader, authorities)?;
        let mut edns = None;
        let mut others = Vec::new();
        for _ in 0..additionals {
            let record = Record::read(&mut reader)?;
            if record.record_type() != RecordType::OPT {
                others.push(record);
                continue;
            }
            if edns.is_some() {
                return Err(WireError::DuplicateOpt);
            }
            let (opt, rcode_high) = Edns::from_record(record)?;
            header.rcode = Rcode(u16::from(rcode_high) << 4 | header.rcode.0);
            edns = Some(opt);
        }
        Ok(Self { header, questions, answers, authorities, additionals: others, edns })
    }

    /// The message in wire format, names compressed. Fails when a section holds more than
    /// 65535 records, a TXT string is longer than 255 bytes, or the whole is larger than
    /// 65535 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let count = |len: usize| u16::try_from(len).map_err(|_| WireError::TooManyRecords { len });
        let mut writer = Writer::default();
        writer.u16(self.header.id);
        writer.bytes(&self.header.flags());
        writer.u16(count(self.questions.len())?);
        writer.u16(count(self.answers.len())?);
        writer.u16(count(self.authorities.len())?);
        writer.u16(count(self.additionals.len() + usize::from(self.edns.is_some()))?);
        for question in &self.questions {
            writer.name(&question.name, true);
            writer.u16(question.qtype.0);
            writer.u16(question.qclass.0);
        }
        for record in self.answers.iter().chain(&self.authorities).chain(&self.additionals) {
            record.write(&mut writer)?;
        }
        if let Some(edns) = &self.edns {
            edns.write(&mut writer, self.header.rcode)?;
        }
        writer.finish()
    }

    /// The message cut to its header (with the TC bit), questions and OPT record, for a
    /// client to retry over TCP.
    pub fn truncated(&self) -> Self {
        Self {
            header: Header { truncated: true, ..self.header },
            questions: self.questions.clone(),
            edns: self.edns.clone(),
            ..Self::default()
        }
    }
}

/// The records of the answer or authority section, where an OPT record has no place.
fn read_section(reader: &mut Reader<'_>, count: u16) -> Result<Vec<Record>, WireError> {
    (0..count)
        .map(|_| {
            let record = Record::read(reader)?;
            if record.record_type() == RecordType::OPT {
                return Err(WireError::MisplacedOpt);
            }
            Ok(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Random;
    use std::net::Ipv4Addr;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn sample() -> Message {
        let owner = name("Web.prod.svc.cluster.local");
        Message {
            header: Header {
                id: 0xBEEF,
                response: true,
                authoritative: true,
                recursion_desired: true,
                recursion_available: true,
                checking_disabled: true,
                rcode: Rcode::NXDOMAIN,
                ..Header::default()
            },
            questions: vec![Question::new(owner.clone(), RecordType::SRV)],
            answers: vec![
                Record::new(
                    owner.clone(),
                    5,
                    RData::Srv { priority: 0, weight: 100, port: 80, target: owner.clone() },
                ),
                Record::new(owner.clone(), 5, RData::Cname(name("db.prod.svc.cluster.local"))),
            ],
            authorities: vec![Record::new(
                name("cluster.local"),
                5,
                RData::Soa {
                    mname: name("ns.dns.cluster.local"),
                    rname: name("hostmaster.cluster.local"),
                    serial: 42,
                    refresh: 7200,
                    retry: 1800,
                    expire: 86400,
                    minimum: 5,
                },
            )],
            additionals: vec![Record::new(owner, 5, RData::A(Ipv4Addr::new(10, 43, 0, 10)))],
            edns: Some(Edns {
                dnssec_ok: true,
                options: vec![0, 10, 0, 2, 1, 2],
                ..Edns::new(1232)
            }),
        }
    }

    #[test]
    fn round_trip() {
        let message = sample();
        let bytes = message.encode().unwrap();
        assert_eq!(Message::parse(&bytes), Ok(message.clone()));
        // The extended response code travels in the OPT record.
        let extended =
            Message { header: Header { rcode: Rcode::BADVERS, ..message.header }, ..message };
        let bytes = extended.encode().unwrap();
        assert_eq!(bytes[3] & 0x0F, 0);
        assert_eq!(Message::parse(&bytes).map(|m| m.header.rcode), Ok(Rcode::BADVERS));
    }

    #[test]
    fn header_bits() {
        let header = Header {
            id: 0x1234,
            response: true,
            opcode: Opcode::NOTIFY,
            authoritative: true,
            truncated: true,
            recursion_desired: true,
            recursion_available: true,
            authentic_data: true,
            checking_disabled: true,
            rcode: Rcode::REFUSED,
        };
        let bytes = Message { header, ..Message::default() }.encode().unwrap();
        assert_eq!(bytes, [0x12, 0x34, 0xA7, 0xB5, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Message::parse(&bytes).map(|m| m.header), Ok(header));
        // The Z bit is ignored.
        let parsed = Message::parse(&[0, 1, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(parsed.header, Header { id: 1, ..Header::default() });
    }

    #[test]
    fn compression_shrinks_repeated_names() {
        let bytes = sample().encode().unwrap();
        // The question's name is written once in full; every other occurrence of it, and of
        // `cluster.local`, is a pointer. The SRV target alone is written out again.
        let full = b"\x03Web\x04prod\x03svc\x07cluster\x05local\x00";
        let occurrences = bytes.windows(full.len()).filter(|w| w.eq_ignore_ascii_case(full));
        assert_eq!(occurrences.count(), 2);
        assert_eq!(bytes.windows(2).filter(|w| *w == [0xC0, 0x0C]).count(), 3);
        assert!(bytes.len() < 200, "{} bytes", bytes.len());
    }

    #[test]
    fn truncation_keeps_the_question_and_opt() {
        let truncated = sample().truncated();
        assert!(truncated.header.truncated);
        assert_eq!(truncated.questions, sample().questions);
        assert!(truncated.answers.is_empty() && truncated.authorities.is_empty());
        assert!(truncated.additionals.is_empty());
        assert_eq!(truncated.edns, sample().edns);
    }

    /// A query for `a.` of type A, with `additional` appended as its additional records.
    fn query_with(additional_count: u8, additional: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, additional_count];
        bytes.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        bytes.extend_from_slice(additional);
        bytes
    }

    const OPT: &[u8] = b"\x00\x00\x29\x02\x00\x00\x00\x80\x00\x00\x00";

    #[test]
    fn edns_is_read_from_the_additional_section() {
        let message = Message::parse(&query_with(1, OPT)).unwrap();
        let edns = message.edns.unwrap();
        assert_eq!((edns.payload, edns.version, edns.dnssec_ok), (512, 0, true));
        assert!(message.additionals.is_empty());
        assert_eq!(
            Message::parse(&query_with(2, &[OPT, OPT].concat())),
            Err(WireError::DuplicateOpt)
        );
        let owned = [b"\x01a".as_slice(), OPT].concat();
        assert_eq!(Message::parse(&query_with(1, &owned)), Err(WireError::OptOwner));
        // An option whose length runs past the record.
        let bad_option = b"\x00\x00\x29\x02\x00\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x08\x00";
        assert_eq!(Message::parse(&query_with(1, bad_option)), Err(WireError::BadOptions));
        // OPT in the answer section.
        let mut answer = query_with(0, OPT);
        answer[7] = 1;
        assert_eq!(Message::parse(&answer), Err(WireError::MisplacedOpt));
    }

    #[test]
    fn malformed_messages() {
        // A header cut short.
        for len in 0..HEADER_LEN {
            assert!(matches!(
                Message::parse(&[0; HEADER_LEN][..len]),
                Err(WireError::Truncated { .. })
            ));
        }
        // Counts larger than the data.
        assert_eq!(Message::parse(&query_with(3, OPT)), Err(WireError::Truncated { offset: 30 }));
        let mut many_questions = query_with(0, &[]);
        many_questions[4..6].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(Message::parse(&many_questions), Err(WireError::Truncated { offset: 19 }));
        // A question whose name points at itself.
        let looped = [&query_with(0, &[])[..12], b"\xC0\x0C\x00\x01\x00\x01"].concat();
        assert_eq!(Message::parse(&looped), Err(WireError::BadPointer { offset: 12 }));
        // A label length of 64.
        let long =
            [&query_with(0, &[])[..12], &[64], &[b'x'; 64], b"\x00\x00\x01\x00\x01"].concat();
        assert_eq!(Message::parse(&long), Err(WireError::BadLabel { offset: 12, byte: 64 }));
        // A record whose data is longer than what is left.
        let cut = query_with(1, b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x00");
        assert_eq!(Message::parse(&cut), Err(WireError::Truncated { offset: 30 }));
    }

    #[test]
    fn limits_on_writing() {
        let record = Record::new(
            name("x"),
            0,
            RData::Unknown { rtype: RecordType(99), data: vec![0; 60000] },
        );
        let big = Message { answers: vec![record.clone(), record], ..Message::default() };
        assert!(matches!(big.encode(), Err(WireError::TooLarge { .. })));
        let record = Record::new(Name::root(), 0, RData::A(Ipv4Addr::LOCALHOST));
        let many = Message { answers: vec![record; 65536], ..Message::default() };
        assert_eq!(many.encode(), Err(WireError::TooManyRecords { len: 65536 }));
    }

    /// Parsing never panics, and whatever parses survives writing and parsing again.
    /// Returns whether `bytes` parsed.
    fn check_parse(bytes: &[u8]) -> bool {
        let Ok(message) = Message::parse(bytes) else {
            return false;
        };
        if let Ok(encoded) = message.encode() {
            assert_eq!(Message::parse(&encoded).as_ref(), Ok(&message), "{bytes:02x?}");
        }
        true
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random(0x5EED);
        let mut parsed = 0;
        for _ in 0..100_000 {
            let len = random.below(300);
            // Mostly small bytes and pointers, so that names and counts are often plausible
            // and parsing gets past the first field.
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| match random.below(8) {
                    0..=3 => random.byte() % 4,
                    4 => 0xC0,
                    5 => 0x0C,
                    _ => random.byte(),
                })
                .collect();
            // Sections of at most one entry, but now and then any count.
            if len >= HEADER_LEN && random.below(8) != 0 {
                for count in [4, 6, 8, 10] {
                    bytes[count] = 0;
                    bytes[count + 1] %= 2;
                }
            }
            parsed += usize::from(check_parse(&bytes));
        }
        assert!(parsed > 1000, "only {parsed} inputs parsed");
    }

    #[test]
    fn mutated_messages_never_panic() {
        let valid = sample().encode().unwrap();
        let mut random = Random(0xD15EA5E);
        let mut parsed = 0;
        for _ in 0..100_000 {
            let mut bytes = valid.clone();
            random.mutate(&mut bytes);
            parsed += usize::from(check_parse(&bytes));
        }
        assert!(parsed > 1000, "only {parsed} mutations parsed");
    }
}
