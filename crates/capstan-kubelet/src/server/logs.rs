//! Container logs from the CRI log file (`<RFC3339Nano> <stdout|stderr> <F|P> <text>` per
//! line, `P` marking a partial line continued by the next): the options of
//! `GET /containerLogs/...` (tail, since, timestamps, limitBytes) applied to it, and
//! `follow`, which keeps reading as the file grows until the container has exited.

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::runtime::Runtime;
use crate::runtime::cri_api::ContainerState;

/// How often a followed log file is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The query options of a log request, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub(crate) follow: bool,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) timestamps: bool,
    pub(crate) previous: bool,
    /// Only lines logged at or after this instant.
    pub(crate) since: Option<Timestamp>,
    pub(crate) limit_bytes: Option<usize>,
}

/// A log query parameter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for query parameter {name}")]
pub(crate) struct BadLogOption {
    pub(crate) name: &'static str,
    pub(crate) value: String,
}

impl LogOptions {
    /// Reads the options from query pairs, with `now` for `sinceSeconds`.
    pub(crate) fn from_query(
        pairs: &[(String, String)],
        now: Timestamp,
    ) -> Result<Self, BadLogOption> {
        let mut options = LogOptions::default();
        for (name, value) in pairs {
            let bad = |name: &'static str| BadLogOption { name, value: value.clone() };
            let flag = |name: &'static str| match value.as_str() {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(bad(name)),
            };
            match name.as_str() {
                "follow" => options.follow = flag("follow")?,
                "timestamps" => options.timestamps = flag("timestamps")?,
                "previous" => options.previous = flag("previous")?,
                "tailLines" => {
                    let n: i64 = value.parse().map_err(|_| bad("tailLines"))?;
                    options.tail_lines = Some(n.max(0) as usize);
                }
                "limitBytes" => {
                    let n: i64 = value.parse().map_err(|_| bad("limitBytes"))?;
                    if n < 1 {
                        return Err(bad("limitBytes"));
                    }
                    options.limit_bytes = Some(n as usize);
                }
                "sinceSeconds" => {
                    let n: i64 = value.parse().map_err(|_| bad("sinceSeconds"))?;
                    if n < 1 {
                        return Err(bad("sinceSeconds"));
                    }
                    let since = now
                        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(n))
                        .map_err(|_| bad("sinceSeconds"))?;
                    options.since = Some(since);
                }
                "sinceTime" => {
                    options.since = Some(value.parse().map_err(|_| bad("sinceTime"))?);
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// One logical log line: partial lines already joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// The timestamp as the runtime wrote it.
    pub(crate) timestamp: String,
    pub(crate) instant: Option<Timestamp>,
    /// The text including its newline; no newline if the file ends inside the line.
    pub(crate) text: Vec<u8>,
}

/// Assembles logical lines from the CRI log file's physical lines.
#[derive(Debug, Default)]
pub(crate) struct LineParser {
    /// Bytes of a physical line not yet terminated by a newline.
    pending: Vec<u8>,
    /// A logical line whose parts so far were all `P`.
    partial: Option<LogLine>,
}

impl LineParser {
    /// Feeds file bytes; returns the logical lines they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let physical: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(line) = self.physical_line(&physical[..physical.len() - 1]) {
                lines.push(line);
            }
        }
        lines
    }

    /// The partial line held back at the end of the file, if any (for a container that
    /// has exited and will write no more).
    pub(crate) fn finish(&mut self) -> Option<LogLine> {
        self.partial.take()
    }

    fn physical_line(&mut self, line: &[u8]) -> Option<LogLine> {
        let mut fields = line.splitn(4, |b| *b == b' ');
        let timestamp = String::from_utf8_lossy(fields.next()?).into_owned();
        let _stream = fields.next()?;
        let tag = fields.next()?;
        let text = fields.next().unwrap_or_default();
        let complete = !tag.split(|b| *b == b':').any(|t| t == b"P");
        let line = self.partial.get_or_insert_with(|| LogLine {
            instant: timestamp.parse().ok(),
            timestamp,
            text: Vec::new(),
        });
        line.text.extend_from_slice(text);
        if complete {
            line.text.push(b'\n');
            self.partial.take()
        } else {
            None
        }
    }
}

/// Applies `since`, `timestamps` and the byte limit to lines, counting the bytes written.
#[derive(Debug)]
pub(crate) struct Renderer {
    since: Option<Timestamp>,
    timestamps: bool,
    remaining: Option<usize>,
}

impl Renderer {
    pub(crate) fn new(options: &LogOptions) -> Self {
        Renderer {
            since: options.since,
            timestamps: options.timestamps,
            remaining: options.limit_bytes,
        }
    }

    /// Whether the line passes the `since` filter.
    pub(crate) fn wants(&self, line: &LogLine) -> bool {
        match (self.since, line.instant) {
            (Some(since), Some(instant)) => instant >= since,
            _ => true,
        }
    }

    /// The bytes to send for `line` (empty once the limit is reached).
    pub(crate) fn render(&mut self, line: &LogLine, out: &mut Vec<u8>) {
        if !self.wants(line) {
            return;
        }
        let mut bytes = Vec::with_capacity(line.text.len() + 40);
        if self.timestamps {
            bytes.extend_from_slice(line.timestamp.as_bytes());
            bytes.push(b' ');
        }
        bytes.extend_from_slice(&line.text);
        if let Some(remaining) = self.remaining.as_mut() {
            bytes.truncate(*remaining);
            *remaining -= bytes.len();
        }
        out.extend_from_slice(&bytes);
    }

    /// Whether `limitBytes` has been reached.
    pub(crate) fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Renders a whole log (no follow): `since`, then the last `tail_lines`, then the limit.
pub(crate) fn render_all(contents: &[u8], options: &LogOptions) -> Vec<u8> {
    let mut parser = LineParser::default();
    let mut lines = parser.feed(contents);
    lines.extend(parser.finish());
    let mut renderer = Renderer::new(options);
    lines.retain(|line| renderer.wants(line));
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = Vec::new();
    for line in &lines {
        renderer.render(line, &mut out);
    }
    out
}

/// Streams a log file that is still being written: first what `render_all` would give,
/// then each new line as it appears, until the container is no longer running and the
/// file is drained, the limit is reached, or the receiver goes away.
pub(crate) async fn follow(
    path: PathBuf,
    container_id: String,
    options: LogOptions,
    runtime: Arc<dyn Runtime>,
    out: mpsc::Sender<Bytes>,
) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "opening the log file failed");
            return;
        }
    };
    let mut contents = Vec::new();
    if file.read_to_end(&mut contents).await.is_err() {
        return;
    }
    // Everything up to the last newline is rendered now; an unfinished line waits.
    let complete = contents.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut renderer = Renderer::new(&options);
    let first = render_all(&contents[..complete], &options);
    if let Some(limit) = options.limit_bytes {
        renderer.remaining = Some(limit.saturating_sub(first.len()));
    }
    if !first.is_empty() && out.send(Bytes::from(first)).await.is_err() {
        return;
    }
    let mut parser = LineParser::default();
    parser.feed(&contents[complete..]);
    let mut offset = contents.len() as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if renderer.exhausted() {
            return;
        }
        let read = match file.read(&mut chunk).await {
            Ok(read) => read,
            Err(_) => return,
        };
        if read > 0 {
            offset += read as u64;
            let mut rendered = Vec::new();
            for line in parser.feed(&chunk[..read]) {
                renderer.render(&line, &mut rendered);
            }
            if !rendered.is_empty() && out.send(Bytes::from(rendered)).await.is_err() {
                return;
            }
            continue;
        }
        // At the end of the file: stop if the container is gone, else wait for more.
        let running = matches!(
            runtime.container_status(&container_id).await,
            Ok(status) if status.status.as_ref().is_some_and(|s| s.state == ContainerState::ContainerRunning as i32)
        );
        if !running {
            let mut rendered = Vec::new();
            if let Some(line) = parser.finish() {
                renderer.render(&line, &mut rendered);
            }
            if !rendered.is_empty() {
                let _ = out.send(Bytes::from(rendered)).await;
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = out.closed() => return,
        }
        // A log file truncated or replaced under us is read again from its start.
        if let Ok(metadata) = tokio::fs::metadata(&path).await
            && metadata.len() < offset
        {
            offset = 0;
            if file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout P e
2024-05-01T10:00:02.2Z stdout F e
2024-05-01T10:00:03Z stdout F
2024-05-01T10:00:04Z stdout F five
";

    fn check(query: &[(&str, &str)], expected: &str) {
        let pairs: Vec<(String, String)> =
            query.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let now: Timestamp = "2024-05-01T10:00:05Z".parse().unwrap();
        let options = LogOptions::from_query(&pairs, now).unwrap();
        let out = render_all(LOG.as_bytes(), &options);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "query {query:?}");
    }

    #[test]
    fn options_shape_the_output() {
        check(&[], "one\ntwo\nthree\n\nfive\n");
        check(&[("tailLines", "2")], "\nfive\n");
        check(&[("tailLines", "0")], "");
        check(&[("tailLines", "100")], "one\ntwo\nthree\n\nfive\n");
        check(
            &[("timestamps", "true"), ("tailLines", "2")],
            "2024-05-01T10:00:03Z \n2024-05-01T10:00:04Z five\n",
        );
        check(
            &[("timestamps", "true"), ("sinceTime", "2024-05-01T10:00:02Z")],
            concat!(
                "2024-05-01T10:00:02Z three\n",
                "2024-05-01T10:00:03Z \n",
                "2024-05-01T10:00:04Z five\n"
            ),
        );
        check(&[("sinceSeconds", "2")], "\nfive\n");
        check(&[("limitBytes", "6")], "one\ntw");
        check(
            &[("sinceTime", "2024-05-01T10:00:01Z"), ("tailLines", "1"), ("limitBytes", "2")],
            "fi",
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let now = Timestamp::UNIX_EPOCH;
        for (name, value) in [
            ("tailLines", "x"),
            ("limitBytes", "0"),
            ("sinceTime", "yesterday"),
            ("follow", "maybe"),
        ] {
            let pairs = vec![(name.to_owned(), value.to_owned())];
            assert!(LogOptions::from_query(&pairs, now).is_err(), "{name}={value}");
        }
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut parser = LineParser::default();
        let mut texts = Vec::new();
        for piece in LOG.as_bytes().chunks(7) {
            texts
                .extend(parser.feed(piece).into_iter().map(|l| String::from_utf8(l.text).unwrap()));
        }
        assert_eq!(texts, ["one\n", "two\n", "three\n", "\n", "five\n"]);
        assert_eq!(parser.finish(), None);
        parser.feed(b"2024-05-01T10:00:02Z stdout P cut");
        assert_eq!(parser.feed(b"\n"), Vec::new());
        let rest = parser.finish().unwrap();
        assert_eq!(rest.text, b"cut");
    }
}
