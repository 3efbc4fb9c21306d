//! The DNS wire format, as much of it as the cluster DNS speaks: messages (RFC 1035 §4),
//! names with compression (§4.1.4), the record types the zone serves or relays, and the
//! EDNS0 OPT pseudo-record (RFC 6891).
//!
//! Parsing takes untrusted bytes and never panics: every read is bounds-checked, names are
//! limited to 63-byte labels and 255 bytes in all, and a compression pointer must point
//! strictly before the name segment it ends, so a pointer loop cannot exist. Records of
//! types it does not know keep their RDATA as bytes (RFC 3597), relayed as received (so the
//! obsolete types whose data could hold compressed names, MB or MINFO, are not rewritten).
//! Writing compresses question and owner names and the names in NS, CNAME, PTR, MX and SOA
//! data, never an SRV target (RFC 2782).
//!
//! - [`Name`]: a domain name, compared case-insensitively.
//! - [`Record`], [`RData`], [`RecordType`], [`Class`]: resource records.
//! - [`Message`], [`Header`], [`Question`], [`Edns`], [`Opcode`], [`Rcode`]: whole messages,
//!   [`Message::parse`] and [`Message::encode`].

mod codec;
mod message;
mod name;
mod record;

pub use message::{Edns, Header, Message, Opcode, Question, Rcode};
pub use name::Name;
pub use record::{Class, RData, Record, RecordType};

/// The size of a message header.
pub const HEADER_LEN: usize = 12;

/// The largest message either transport carries.
pub const MAX_MESSAGE: usize = 65535;

/// The longest label.
pub const MAX_LABEL: usize = 63;

/// The longest name in wire format, length bytes and the root's zero included.
pub const MAX_NAME: usize = 255;

/// Why bytes are not a DNS message, or why a message cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message ends inside a field at byte {offset}")]
    Truncated { offset: usize },
    #[error("byte {byte:#04x} at {offset} is neither a label length nor a compression pointer")]
    BadLabel { offset: usize, byte: u8 },
    #[error("compression pointer at byte {offset} does not point before its name")]
    BadPointer { offset: usize },
    #[error("name has more than {max} compression pointers", max = name::MAX_POINTERS)]
    TooManyPointers,
    #[error("label of {len} bytes is longer than 63")]
    LabelTooLong { len: usize },
    #[error("name is longer than 255 bytes")]
    NameTooLong,
    #[error("empty label in {name:?}")]
    EmptyLabel { name: String },
    #[error("non-ascii name {name:?}")]
    NotAscii { name: String },
    #[error("{rtype} data at byte {offset} does not fill its length")]
    RdataLength { rtype: RecordType, offset: usize },
    #[error("opt record outside the additional section")]
    MisplacedOpt,
    #[error("more than one opt record")]
    DuplicateOpt,
    #[error("opt record with an owner other than the root")]
    OptOwner,
    #[error("edns options do not fill the opt record")]
    BadOptions,
    #[error("character string of {len} bytes is longer than 255")]
    StringTooLong { len: usize },
    #[error("{len} records do not fit a section count")]
    TooManyRecords { len: usize },
    #[error("message of {len} bytes is larger than 65535")]
    TooLarge { len: usize },
}
