//! A SPDY/3.1 frame codec: the framing containerd's streaming server (Go's `spdystream`)
//! speaks for exec, attach and port-forward. Header blocks are zlib streams with the
//! protocol's fixed dictionary, one compression context per direction per connection.
//!
//! Only the client side of the protocol is needed: the kubelet opens streams towards
//! containerd and relays their data.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// `FLAG_FIN` on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half is closed.
pub(crate) const FLAG_FIN: u8 = 0x01;

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// A frame larger than this is refused rather than buffered (the protocol allows 16 MiB).
const MAX_FRAME_LENGTH: usize = 1 << 24;
/// A decompressed header block larger than this is refused.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// A malformed frame or header block.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpdyError {
    #[error("spdy frame of {0} bytes is too short for its type")]
    Short(usize),
    #[error("unsupported spdy version {0}")]
    Version(u16),
    #[error("malformed spdy header block")]
    HeaderBlock,
    #[error("spdy header compression: {0}")]
    Compression(String),
}

/// One header name and value; names are lowercase on the wire.
pub(crate) type Headers = Vec<(String, String)>;

/// One SPDY/3 frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Settings as (flags, id, value) triples.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this codec does not know; SPDY says to ignore it.
    Unknown {
        frame_type: u16,
    },
}

/// The SPDY/3 header-compression dictionary (SPDY/3 draft §2.6.10.1): these words, each
/// preceded by its length as a big-endian u32, then [`DICTIONARY_TAIL`] verbatim.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502",
    "504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov ",
    "Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The dictionary's bytes.
pub(crate) fn dictionary() -> Vec<u8> {
    let mut out = Vec::with_capacity(1424);
    for word in DICTIONARY_WORDS {
        out.put_u32(word.len() as u32);
        out.extend_from_slice(word.as_bytes());
    }
    out.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    out
}

/// Writes frames; owns the outgoing header-compression context.
pub(crate) struct Encoder {
    compress: Compress,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub(crate) fn new() -> Result<Self, SpdyError> {
        let mut compress = Compress::new(Compression::default(), true);
        compress
            .set_dictionary(&dictionary())
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Encoder { compress })
    }

    /// Appends `frame`'s bytes to `out`.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let block = self.header_block(headers)?;
                control_header(out, TYPE_SYN_STREAM, *flags, 10 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0);
                out.extend_from_slice(&block);
            }
            Frame::SynReply { stream_id, flags, headers } => {
                let block = self.header_block(headers)?;
                control_header(out, TYPE_SYN_REPLY, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::Headers { stream_id, flags, headers } => {
                let block = self.header_block(headers)?;
                control_header(out, TYPE_HEADERS, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control_header(out, TYPE_SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((u32::from(*flags) << 24) | (id & 0xff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control_header(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Data { stream_id, flags, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | (data.len() as u32 & 0xff_ffff));
                out.extend_from_slice(data);
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// The compressed header block: a count, then length-prefixed names and values,
    /// deflated and sync-flushed so the block ends on a byte boundary.
    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            plain.put_u32(value.len() as u32);
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.compress.total_in();
        loop {
            let consumed = (self.compress.total_in() - start) as usize;
            out.reserve(plain.len() + 64);
            self.compress
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            // A sync flush is complete once all input is taken and output space remains.
            if (self.compress.total_in() - start) as usize == plain.len()
                && out.len() < out.capacity()
            {
                return Ok(out);
            }
        }
    }
}

fn control_header(out: &mut BytesMut, frame_type: u16, flags: u8, length: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32((u32::from(flags) << 24) | (length as u32 & 0xff_ffff));
}

/// Reads frames; owns the incoming header-decompression context.
pub(crate) struct Decoder {
    decompress: Decompress,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { decompress: Decompress::new(true) }
    }
}

impl Decoder {
    /// Takes one whole frame off the front of `buf`, or `None` if more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if length > MAX_FRAME_LENGTH {
            return Err(SpdyError::Short(length));
        }
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let first = buf.get_u32();
        let flags_length = buf.get_u32();
        let flags = (flags_length >> 24) as u8;
        let mut body = buf.split_to(length).freeze();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream_id: first & 0x7fff_ffff, flags, data: body }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let frame_type = (first & 0xffff) as u16;
        let need = |n: usize| if length < n { Err(SpdyError::Short(length)) } else { Ok(()) };
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need(10)?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let associated_to = body.get_u32() & 0x7fff_ffff;
                let priority = body.get_u8() >> 5;
                let _slot = body.get_u8();
                let headers = self.headers(&body)?;
                Frame::SynStream { stream_id, associated_to, priority, flags, headers }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(4)?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply { stream_id, flags, headers }
                } else {
                    Frame::Headers { stream_id, flags, headers }
                }
            }
            TYPE_RST_STREAM => {
                need(8)?;
                Frame::RstStream { stream_id: body.get_u32() & 0x7fff_ffff, status: body.get_u32() }
            }
            TYPE_SETTINGS => {
                need(4)?;
                let count = body.get_u32() as usize;
                need(4 + count.saturating_mul(8))?;
                let entries = (0..count)
                    .map(|_| {
                        let id = body.get_u32();
                        ((id >> 24) as u8, id & 0xff_ffff, body.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(4)?;
                Frame::Ping { id: body.get_u32() }
            }
            TYPE_GOAWAY => {
                need(8)?;
                Frame::GoAway {
                    last_good_stream_id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: body.get_u32() & 0x7fff_ffff,
                    delta: body.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    /// Inflates one header block (a continuation of this direction's zlib stream) and
    /// parses its name/value pairs. Go's side deflates with the dictionary, so the first
    /// block asks for it.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut plain = Vec::with_capacity(compressed.len() * 4 + 64);
        let start = self.decompress.total_in();
        loop {
            let consumed = (self.decompress.total_in() - start) as usize;
            if plain.len() == plain.capacity() {
                if plain.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock);
                }
                plain.reserve(plain.len().max(256));
            }
            match self.decompress.decompress_vec(
                &compressed[consumed..],
                &mut plain,
                FlushDecompress::Sync,
            ) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    let consumed = (self.decompress.total_in() - start) as usize;
                    if consumed == compressed.len() && plain.len() < plain.capacity() {
                        break;
                    }
                }
                Err(error) if error.needs_dictionary().is_some() => {
                    self.decompress
                        .set_dictionary(&dictionary())
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
        }
        parse_header_block(&plain)
    }
}

fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    let take = |block: &mut &[u8]| -> Result<String, SpdyError> {
        if block.len() < 4 {
            return Err(SpdyError::HeaderBlock);
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(SpdyError::HeaderBlock);
        }
        let text = String::from_utf8_lossy(&block[..len]).into_owned();
        block.advance(len);
        Ok(text)
    };
    if block.len() < 4 {
        return Err(SpdyError::HeaderBlock);
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut block)?;
        let value = take(&mut block)?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut encoder = Encoder::new().unwrap();
        let mut decoder = Decoder::default();
        let mut wire = BytesMut::new();
        for frame in frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        let mut out = Vec::new();
        // Feed byte by byte so that partial frames are exercised too.
        let mut buf = BytesMut::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        assert!(buf.is_empty());
        out
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn dictionary_has_the_spec_length() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        assert!(dict.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(dict.ends_with(b",*,enq=0."));
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: headers(&[("streamtype", "stdin"), ("port", "80")]),
            },
            Frame::SynReply { stream_id: 1, flags: 0, headers: Vec::new() },
            Frame::Headers { stream_id: 3, flags: 0, headers: headers(&[("a", "b\0c")]) },
            Frame::Data { stream_id: 3, flags: 0, data: Bytes::from_static(b"abc") },
            Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::new() },
            Frame::RstStream { stream_id: 5, status: 5 },
            Frame::Settings { flags: 0, entries: vec![(1, 7, 65536), (0, 4, 100)] },
            Frame::Ping { id: 2 },
            Frame::WindowUpdate { stream_id: 1, delta: 4096 },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn header_blocks_share_one_compression_context() {
        // The second block compresses against the first: decoding it alone must fail,
        // decoding it after the first must give the headers back.
        let mut encoder = Encoder::new().unwrap();
        let first = Frame::SynReply { stream_id: 1, flags: 0, headers: headers(&[("x", "y")]) };
        let second = Frame::SynReply { stream_id: 3, flags: 0, headers: headers(&[("x", "y")]) };
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encoder.encode(&first, &mut a).unwrap();
        encoder.encode(&second, &mut b).unwrap();
        assert!(b.len() < a.len(), "the repeated block is shorter");
        let mut decoder = Decoder::default();
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert_eq!(decoder.decode(&mut both).unwrap(), Some(first));
        assert_eq!(decoder.decode(&mut both).unwrap(), Some(second));
        assert!(Decoder::default().decode(&mut b).is_err());
    }

    #[test]
    fn a_block_compressed_with_the_dictionary_is_inflated() {
        // A peer that deflates with the dictionary, as Go's spdystream does: the zlib
        // header carries FDICT and the decoder must supply the dictionary.
        let mut compress = Compress::new(Compression::best(), true);
        compress.set_dictionary(&dictionary()).unwrap();
        let mut plain = Vec::new();
        plain.put_u32(1);
        for text in ["x-stream-protocol-version", "v4.channel.k8s.io"] {
            plain.put_u32(text.len() as u32);
            plain.extend_from_slice(text.as_bytes());
        }
        let mut block = Vec::with_capacity(1024);
        compress.compress_vec(&plain, &mut block, FlushCompress::Sync).unwrap();
        assert_eq!(block[1] & 0x20, 0x20, "FDICT is set");
        let mut wire = BytesMut::new();
        control_header(&mut wire, TYPE_SYN_REPLY, 0, 4 + block.len());
        wire.put_u32(7);
        wire.extend_from_slice(&block);
        let frame = Decoder::default().decode(&mut wire).unwrap();
        assert_eq!(
            frame,
            Some(Frame::SynReply {
                stream_id: 7,
                flags: 0,
                headers: headers(&[("x-stream-protocol-version", "v4.channel.k8s.io")]),
            })
        );
    }

    #[test]
    fn truncated_and_bad_frames_are_refused() {
        let mut decoder = Decoder::default();
        let mut short = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 0][..]);
        assert!(decoder.decode(&mut short).is_err());
        let mut version = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(decoder.decode(&mut version).is_err());
        let mut partial = BytesMut::from(&[0x00, 0x00, 0x00, 0x01, 0, 0, 0, 4, 1][..]);
        assert_eq!(decoder.decode(&mut partial).unwrap(), None);
    }
}
