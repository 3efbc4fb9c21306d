//! Element changes sent to nf_tables over netlink, as one batch (one transaction).
//!
//! Only what the proxy needs: adding and deleting elements of existing sets and maps
//! (verdicts, endpoint ranges, address pairs). The kernel applies such a batch without
//! loading anything and, since no rule changes, without re-validating the ruleset unless a
//! verdict jumps to a chain; so its cost follows the change, not the size of the tables.
//! Everything else goes through `nft`.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, sockopt};

use crate::elements::{Element, ElementBatch, Operation, SetChange};
use crate::state::{IpFamily, MapKey, Verdict};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
const NF_DROP: i32 = 0;
const NFT_GOTO: i32 = -4;

const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Elements per message: small messages keep every attribute within its 16-bit length.
const ELEMENTS_PER_MESSAGE: usize = 100;

/// How long to wait for the kernel's answer before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot talk to nf_tables over netlink")]
    Socket(#[source] io::Error),
    #[error("nf_tables refused to {change}")]
    Refused {
        change: String,
        #[source]
        source: io::Error,
    },
    #[error("nf_tables refused the transaction")]
    Commit(#[source] io::Error),
    #[error("no answer from nf_tables")]
    NoAnswer,
}

/// A netlink socket to nf_tables, kept open: closing one waits for an RCU grace period
/// (several milliseconds), which would dominate the cost of a small change.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
    /// The sequence number of the last message sent.
    sequence: u32,
}

impl Socket {
    pub(crate) fn open() -> Result<Self, NetlinkError> {
        let open = || -> io::Result<OwnedFd> {
            let fd = rustix::net::socket(
                AddressFamily::NETLINK,
                SocketType::RAW,
                Some(netlink::NETFILTER),
            )?;
            rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
            sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(REPLY_TIMEOUT))?;
            Ok(fd)
        };
        Ok(Self { fd: open().map_err(NetlinkError::Socket)?, sequence: 0 })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    /// Applies `batch` as one transaction. After an error other than the kernel's refusal,
    /// the socket is in an unknown state and should be dropped.
    pub(crate) fn apply(&mut self, batch: &ElementBatch) -> Result<(), NetlinkError> {
        let mut writer = Writer::default();
        let begin = self.next_sequence();
        writer.message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        let mut sent: Vec<(u32, &SetChange)> = Vec::new();
        for change in &batch.changes {
            for chunk in change.elements.chunks(ELEMENTS_PER_MESSAGE) {
                let sequence = self.next_sequence();
                set_elements(&mut writer, sequence, &batch.table, change, chunk);
                sent.push((sequence, change));
            }
        }
        let end = self.next_sequence();
        writer.message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        self.reserve(writer.buf.len()).map_err(NetlinkError::Socket)?;
        rustix::net::send(&self.fd, &writer.buf, SendFlags::empty())
            .map_err(|errno| NetlinkError::Socket(errno.into()))?;
        // The batch is processed (and committed) within the send above; a request of its
        // own afterwards marks the end of the batch's answers.
        let mut barrier = Writer::default();
        let barrier_sequence = self.next_sequence();
        barrier.message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
            NLM_F_REQUEST | NLM_F_ACK,
            barrier_sequence,
            NFPROTO_UNSPEC,
            0,
        );
        rustix::net::send(&self.fd, &barrier.buf, SendFlags::empty())
            .map_err(|errno| NetlinkError::Socket(errno.into()))?;

        let mut first_error = None;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let (received, _) = rustix::net::recv(&self.fd, &mut buffer[..], RecvFlags::empty())
                .map_err(|errno| match errno {
                    rustix::io::Errno::AGAIN => NetlinkError::NoAnswer,
                    errno => NetlinkError::Socket(errno.into()),
                })?;
            for (sequence, error) in errors(&buffer[..received]) {
                if sequence == barrier_sequence {
                    return first_error.map_or(Ok(()), Err);
                }
                // Answers to an earlier, abandoned exchange, or acknowledgements.
                if error == 0 || first_error.is_some() || sequence < begin || sequence > end {
                    continue;
                }
                let source = io::Error::from_raw_os_error(-error);
                first_error = Some(match sent.iter().find(|(sent, _)| *sent == sequence) {
                    Some((_, change)) => {
                        NetlinkError::Refused { change: describe(&batch.table, change), source }
                    }
                    // The commit's own failure is reported against the batch's beginning.
                    None => NetlinkError::Commit(source),
                });
            }
        }
    }

    /// Makes the send buffer hold `bytes` at once.
    fn reserve(&self, bytes: usize) -> io::Result<()> {
        let wanted = bytes + (1 << 16);
        if sockopt::socket_send_buffer_size(&self.fd)? < wanted {
            // The forced size needs CAP_NET_ADMIN, which writing nftables needs anyway; the
            // plain one is capped by net.core.wmem_max.
            sockopt::set_socket_send_buffer_size_force(&self.fd, wanted)
                .or_else(|_| sockopt::set_socket_send_buffer_size(&self.fd, wanted))?;
        }
        Ok(())
    }
}

/// `add element ip table set` (the text of an error).
fn describe(table: &str, change: &SetChange) -> String {
    let operation = match change.operation {
        Operation::Add => "add",
        Operation::Delete => "delete",
    };
    format!("{operation} elements of {} {table} {}", change.family.nft(), change.set)
}

/// The `(sequence, error)` of each error or acknowledgement in `datagram`.
fn errors(mut datagram: &[u8]) -> Vec<(u32, i32)> {
    let mut found = Vec::new();
    while datagram.len() >= 16 {
        let length = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]);
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        let sequence = u32::from_ne_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
        if kind == NLMSG_ERROR && datagram.len() >= 20 {
            let error =
                i32::from_ne_bytes([datagram[16], datagram[17], datagram[18], datagram[19]]);
            // The acknowledged request's header follows; its sequence number is the one
            // that counts (it is also in the outer header).
            found.push((sequence, error));
        }
        let advance = (usize::try_from(length).unwrap_or(usize::MAX).max(16) + 3) & !3;
        if advance >= datagram.len() {
            break;
        }
        datagram = &datagram[advance..];
    }
    found
}

/// One `NEWSETELEM` or `DELSETELEM` message with `elements` of `change`'s set.
fn set_elements(
    writer: &mut Writer,
    sequence: u32,
    table: &str,
    change: &SetChange,
    elements: &[Element],
) {
    // No acknowledgement asked: errors are reported anyway, and the barrier request after
    // the batch tells when there are none.
    let kind = match change.operation {
        Operation::Add => NFT_MSG_NEWSETELEM,
        Operation::Delete => NFT_MSG_DELSETELEM,
    };
    let family = match change.family {
        IpFamily::V4 => NFPROTO_IPV4,
        IpFamily::V6 => NFPROTO_IPV6,
    };
    let start =
        writer.message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST, sequence, family, 0);
    writer.string(NFTA_SET_ELEM_LIST_TABLE, table);
    writer.string(NFTA_SET_ELEM_LIST_SET, &change.set);
    let list = writer.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
    let with_values = change.operation == Operation::Add;
    for element in elements {
        match element {
            Element::Verdict { key, verdict } => {
                let value = with_values.then_some(verdict);
                list_element(writer, &map_key(key), value.map(Data::Verdict), 0);
            }
            Element::Range { first, last, backend } => {
                let mut data = address(backend.ip);
                data.extend(service(backend.port));
                let data = with_values.then_some(Data::Value(&data));
                list_element(writer, &first.to_be_bytes(), data, 0);
                // The range ends before its end element's key.
                let end = last.saturating_add(1).to_be_bytes();
                list_element(writer, &end, None, NFT_SET_ELEM_INTERVAL_END);
            }
            Element::Hairpin(ip) => {
                let mut key = address(*ip);
                key.extend(address(*ip));
                list_element(writer, &key, None, 0);
            }
        }
    }
    writer.end_nest(list);
    writer.end_message(start);
}

/// An element's value.
enum Data<'a> {
    Value(&'a [u8]),
    Verdict(&'a Verdict),
}

fn list_element(writer: &mut Writer, key: &[u8], data: Option<Data<'_>>, flags: u32) {
    let element = writer.begin_nest(NFTA_LIST_ELEM);
    let nest = writer.begin_nest(NFTA_SET_ELEM_KEY);
    writer.attr(NFTA_DATA_VALUE, key);
    writer.end_nest(nest);
    match data {
        Some(Data::Value(value)) => {
            let nest = writer.begin_nest(NFTA_SET_ELEM_DATA);
            writer.attr(NFTA_DATA_VALUE, value);
            writer.end_nest(nest);
        }
        Some(Data::Verdict(verdict)) => {
            let nest = writer.begin_nest(NFTA_SET_ELEM_DATA);
            let inner = writer.begin_nest(NFTA_DATA_VERDICT);
            match verdict {
                Verdict::Goto(chain) => {
                    writer.attr(NFTA_VERDICT_CODE, &NFT_GOTO.to_be_bytes());
                    writer.string(NFTA_VERDICT_CHAIN, chain);
                }
                Verdict::Drop => writer.attr(NFTA_VERDICT_CODE, &NF_DROP.to_be_bytes()),
            }
            writer.end_nest(inner);
            writer.end_nest(nest);
        }
        None => {}
    }
    if flags != 0 {
        writer.attr(NFTA_SET_ELEM_FLAGS, &flags.to_be_bytes());
    }
    writer.end_nest(element);
}

/// A verdict map key: each field of the concatenation in network order, padded to 4 bytes.
fn map_key(key: &MapKey) -> Vec<u8> {
    match key {
        MapKey::Address(ip, protocol, port) => {
            let mut bytes = address(*ip);
            bytes.extend([protocol.number(), 0, 0, 0]);
            bytes.extend(service(*port));
            bytes
        }
        MapKey::Port(protocol, port) => {
            let mut bytes = vec![protocol.number(), 0, 0, 0];
            bytes.extend(service(*port));
            bytes
        }
    }
}

fn address(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// A port as a field of a concatenation: two bytes in network order, two of padding.
fn service(port: u16) -> [u8; 4] {
    let [high, low] = port.to_be_bytes();
    [high, low, 0, 0]
}

/// Netlink messages and attributes, written into one buffer.
#[derive(Debug, Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a message (header and `nfgenmsg`); returns where it starts.
    fn message(
        &mut self,
        kind: u16,
        flags: u16,
        sequence: u32,
        family: u8,
        resource: u16,
    ) -> usize {
        let start = self.buf.len();
        self.buf.extend(0u32.to_ne_bytes()); // length, set by end_message
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(flags.to_ne_bytes());
        self.buf.extend(sequence.to_ne_bytes());
        self.buf.extend(0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.extend([family, 0]); // nfgenmsg: family, version
        self.buf.extend(resource.to_be_bytes());
        self.end_message(start);
        start
    }

    /// Sets the length of the message starting at `start` to reach the end of the buffer.
    fn end_message(&mut self, start: usize) {
        let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&length.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let length = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend(length.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(payload);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    fn string(&mut self, kind: u16, text: &str) {
        let mut payload = text.as_bytes().to_vec();
        payload.push(0);
        self.attr(kind, &payload);
    }

    fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend(0u16.to_ne_bytes());
        self.buf.extend((kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let length = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Backend, Protocol};

    #[test]
    fn keys_are_padded_fields_in_network_order() {
        let key = MapKey::Address("10.96.0.1".parse().unwrap(), Protocol::Udp, 53);
        assert_eq!(map_key(&key), [10, 96, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(map_key(&MapKey::Port(Protocol::Tcp, 30080)), [6, 0, 0, 0, 0x75, 0x80, 0, 0]);
    }

    #[test]
    fn a_range_is_a_start_element_with_data_and_an_end_element() {
        let change = SetChange {
            family: IpFamily::V4,
            set: "m".to_owned(),
            operation: Operation::Add,
            elements: vec![Element::Range {
                first: 0,
                last: 255,
                backend: Backend { ip: "10.0.0.1".parse().unwrap(), port: 8080 },
            }],
        };
        let mut writer = Writer::default();
        set_elements(&mut writer, 7, "t", &change, &change.elements);
        let bytes = &writer.buf;
        assert_eq!(
            usize::try_from(u32::from_ne_bytes(bytes[..4].try_into().unwrap())).unwrap(),
            bytes.len()
        );
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), (10 << 8) | 12);
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
        assert!(contains(&[10, 0, 0, 1, 0x1f, 0x90, 0, 0]), "backend data");
        assert!(contains(&256u32.to_be_bytes()), "end key");
        assert!(contains(&NFT_SET_ELEM_INTERVAL_END.to_be_bytes()), "end flag");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn errors_are_read_from_each_message() {
        let mut datagram = Vec::new();
        for (sequence, error) in [(3u32, 0i32), (4, -2)] {
            datagram.extend(36u32.to_ne_bytes());
            datagram.extend(NLMSG_ERROR.to_ne_bytes());
            datagram.extend(0u16.to_ne_bytes());
            datagram.extend(sequence.to_ne_bytes());
            datagram.extend(0u32.to_ne_bytes());
            datagram.extend(error.to_ne_bytes());
            datagram.extend([0u8; 16]);
        }
        assert_eq!(errors(&datagram), [(3, 0), (4, -2)]);
    }
}
