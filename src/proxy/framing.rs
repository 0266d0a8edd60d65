//! Strict HTTP/1.1 framing on the way in: a byte-level watch over each HTTP/1.1 connection that
//! refuses what two parsers could read differently (SECURITY.md "Proxying": request smuggling).
//!
//! hyper accepts, as RFC 9112 lets a server, a bare LF as a line end, and normalises a request
//! with both `Content-Length` and `Transfer-Encoding` (or a repeated `Content-Length`) before the
//! proxy sees it. A proxy must refuse them instead. [`StrictHttp1`] wraps the connection's byte
//! stream below hyper and follows the message framing itself — request head, then a body of
//! `Content-Length` bytes or chunks — so it knows where each head starts. When it finds a bare
//! LF in a head or chunk line, more than one `Content-Length`, or `Content-Length` together with
//! `Transfer-Encoding`, it cuts the stream there and hands hyper an invalid head line instead,
//! which hyper answers with `400 Bad Request` and closes the connection; nothing of the request
//! reaches the proxy or an upstream. After an `Upgrade` request or `CONNECT` it stops watching
//! (what follows a `101` is not HTTP).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper is given in place of the rest of a refused stream: a header line with a NUL, which
/// no HTTP parser accepts, then the end of the head.
const POISON: &[u8] = b"\x00\r\n\r\n";
/// Longest line kept for inspection; longer ones are still scanned for bare LFs (hyper refuses
/// heads over its own limit anyway).
const MAX_LINE: usize = 16 * 1024;
/// How much of a line other than `Content-Length` is kept: enough for `CONNECT ` and for every
/// header name [`Head::end_line`] compares (the longest, `transfer-encoding`, and its colon), so
/// a longer name is never one of them, with or without the rest of the line.
const KEPT_PREFIX: usize = 32;
/// The largest line buffer a head hands on to the next request's head on the same connection
/// (a long `Content-Length` line's buffer is dropped rather than kept for the connection's life).
const REUSED_LINE_CAPACITY: usize = 256;
const CONTENT_LENGTH_COLON: &[u8] = b"content-length:";

/// Where in the message the next byte is.
#[derive(Debug)]
enum State {
    /// In a request head (request line and header fields).
    Head(Head),
    /// In a body of this many remaining bytes.
    Body(u64),
    /// In a chunked body.
    Chunk(Chunk),
    /// No longer watching (after an upgrade or `CONNECT`).
    Passthrough,
    /// Refused: [`POISON`] (from this offset) is handed out, then end of stream.
    Refused(usize),
}

#[derive(Debug, Default)]
struct Head {
    line: Vec<u8>,
    prev_cr: bool,
    seen_request_line: bool,
    content_lengths: u32,
    content_length: Option<u64>,
    transfer_encoding: bool,
    upgrade: bool,
    connect: bool,
    /// Set in a chunked body's trailer section, which ends like a head.
    trailer: bool,
}

#[derive(Debug)]
enum Chunk {
    /// The chunk-size line (size, extensions) up to its LF.
    Size {
        size: u64,
        digits: bool,
        ext: bool,
        prev_cr: bool,
    },
    /// Chunk data of this many bytes, then CRLF.
    Data(u64),
    /// The CRLF after chunk data (`true` once the CR was seen).
    DataEnd(bool),
}

/// Why a stream was refused (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A line ended with LF alone.
    BareLf,
    /// `Content-Length` more than once.
    RepeatedContentLength,
    /// `Content-Length` together with `Transfer-Encoding`.
    LengthAndTransferEncoding,
    /// A chunk-size line that is not hexadecimal.
    BadChunkSize,
}

impl State {
    fn head() -> State {
        State::Head(Head::default())
    }

    /// Advances over `bytes`; the offset and reason of the first refused byte, if any.
    fn scan(&mut self, bytes: &[u8]) -> Option<(usize, Refusal)> {
        let mut i = 0;
        while i < bytes.len() {
            match self {
                State::Passthrough | State::Refused(_) => return None,
                State::Body(left) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        *self = State::head();
                    }
                    continue;
                }
                State::Chunk(Chunk::Data(left)) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        *self = State::Chunk(Chunk::DataEnd(false));
                    }
                    continue;
                }
                State::Head(head) if !head.prev_cr => {
                    // The bytes up to the next CR or LF belong to the current line: keep what
                    // `end_line` reads of them in one go instead of stepping byte by byte.
                    let rest = &bytes[i..];
                    let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    head.extend(&rest[..run]);
                    i += run;
                    if i == bytes.len() {
                        break;
                    }
                }
                _ => {}
            }
            let b = bytes[i];
            if let Err(refusal) = self.step(b) {
                return Some((i, refusal));
            }
            i += 1;
        }
        None
    }

    /// One byte of a head or chunk line.
    fn step(&mut self, b: u8) -> Result<(), Refusal> {
        match self {
            State::Head(head) => {
                if b == b'\n' {
                    if !head.prev_cr {
                        return Err(Refusal::BareLf);
                    }
                    head.prev_cr = false;
                    if let Some(mut next) = head.end_line()? {
                        // The next request's head reuses this one's (cleared) line buffer.
                        if let State::Head(fresh) = &mut next
                            && head.line.capacity() <= REUSED_LINE_CAPACITY
                        {
                            fresh.line = std::mem::take(&mut head.line);
                        }
                        *self = next;
                    }
                } else {
                    if head.prev_cr {
                        head.push(b'\r');
                    }
                    head.prev_cr = b == b'\r';
                    if b != b'\r' {
                        head.push(b);
                    }
                }
            }
            State::Chunk(Chunk::Size {
                size,
                digits,
                ext,
                prev_cr,
            }) => match b {
                b'\n' if !*prev_cr => return Err(Refusal::BareLf),
                b'\n' if !*digits => return Err(Refusal::BadChunkSize),
                b'\n' => {
                    *self = if *size == 0 {
                        State::Head(Head {
                            trailer: true,
                            seen_request_line: true,
                            ..Head::default()
                        })
                    } else {
                        State::Chunk(Chunk::Data(*size))
                    };
                }
                b'\r' => *prev_cr = true,
                _ if *prev_cr => return Err(Refusal::BadChunkSize),
                _ if *ext => {}
                b';' | b' ' | b'\t' => *ext = true,
                _ => {
                    let digit = (b as char).to_digit(16).ok_or(Refusal::BadChunkSize)?;
                    *size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or(Refusal::BadChunkSize)?;
                    *digits = true;
                }
            },
            State::Chunk(Chunk::DataEnd(seen_cr)) => match (b, *seen_cr) {
                (b'\r', false) => *seen_cr = true,
                (b'\n', true) => {
                    *self = State::Chunk(Chunk::Size {
                        size: 0,
                        digits: false,
                        ext: false,
                        prev_cr: false,
                    })
                }
                (b'\n', false) => return Err(Refusal::BareLf),
                _ => return Err(Refusal::BadChunkSize),
            },
            State::Body(_) | State::Chunk(Chunk::Data(_)) | State::Passthrough => {}
            State::Refused(_) => {}
        }
        Ok(())
    }
}

impl Head {
    fn push(&mut self, b: u8) {
        self.extend(&[b]);
    }

    /// Appends to the current line what [`Head::end_line`] needs of it: a `Content-Length`
    /// line up to [`MAX_LINE`] (its value is read), any other line up to [`KEPT_PREFIX`] bytes
    /// (only its start is: the request line's method, a header name up to its colon).
    fn extend(&mut self, bytes: &[u8]) {
        let limit = if self.line.len() < KEPT_PREFIX || self.is_content_length_line() {
            MAX_LINE
        } else {
            return;
        };
        let room = limit - self.line.len().min(limit);
        let take = bytes.len().min(room);
        if take == 0 {
            return;
        }
        let bytes = &bytes[..take];
        if self.line.len() < KEPT_PREFIX && self.line.len() + take > KEPT_PREFIX {
            // Past the prefix only a `Content-Length` line is kept whole.
            let (prefix, tail) = bytes.split_at(KEPT_PREFIX - self.line.len());
            self.line.extend_from_slice(prefix);
            if self.is_content_length_line() {
                self.line.extend_from_slice(tail);
            }
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn is_content_length_line(&self) -> bool {
        self.seen_request_line
            && self.line.len() >= CONTENT_LENGTH_COLON.len()
            && self.line[..CONTENT_LENGTH_COLON.len()].eq_ignore_ascii_case(CONTENT_LENGTH_COLON)
    }

    /// A line ended (CRLF); the state after the head when it was its last line.
    fn end_line(&mut self) -> Result<Option<State>, Refusal> {
        let line = std::mem::take(&mut self.line);
        let result = self.read_line(&line);
        // The buffer serves the next line of this head.
        self.line = line;
        self.line.clear();
        result
    }

    fn read_line(&mut self, line: &[u8]) -> Result<Option<State>, Refusal> {
        if line.is_empty() {
            if !self.seen_request_line {
                // Empty lines before a request line are allowed (RFC 9112 §2.2).
                return Ok(None);
            }
            return self.end_head().map(Some);
        }
        if !self.seen_request_line {
            self.seen_request_line = true;
            self.connect = line.starts_with(b"CONNECT ");
            return Ok(None);
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Ok(None);
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths += 1;
            self.content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
        Ok(None)
    }

    fn end_head(&mut self) -> Result<State, Refusal> {
        if self.trailer {
            return Ok(State::head());
        }
        if self.content_lengths > 1 {
            return Err(Refusal::RepeatedContentLength);
        }
        if self.content_lengths == 1 && self.transfer_encoding {
            return Err(Refusal::LengthAndTransferEncoding);
        }
        Ok(if self.upgrade || self.connect {
            State::Passthrough
        } else if self.transfer_encoding {
            State::Chunk(Chunk::Size {
                size: 0,
                digits: false,
                ext: false,
                prev_cr: false,
            })
        } else {
            match self.content_length {
                Some(n) if n > 0 => State::Body(n),
                // hyper refuses an unreadable length itself; nothing more to follow here.
                None if self.content_lengths == 1 => State::Passthrough,
                _ => State::head(),
            }
        })
    }
}

/// An HTTP/1.1 connection's byte stream with strict framing on the way in (see the module
/// documentation). Writes pass through untouched.
pub struct StrictHttp1<T> {
    inner: T,
    state: State,
}

impl<T> StrictHttp1<T> {
    /// Watches the requests read from `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            state: State::head(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StrictHttp1<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let State::Refused(sent) = &mut this.state {
            let rest = &POISON[*sent..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *sent += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if let Some((at, refusal)) = this.state.scan(&buf.filled()[before..]) {
            tracing::debug!(?refusal, "refusing an ambiguous HTTP/1.1 request");
            buf.set_filled(before + at);
            let n = POISON.len().min(buf.remaining());
            buf.put_slice(&POISON[..n]);
            this.state = State::Refused(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StrictHttp1<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Scans `input` in pieces of `step` bytes; the refusal, if any.
    fn scan(input: &str, step: usize) -> Option<Refusal> {
        let mut state = State::head();
        for piece in input.as_bytes().chunks(step) {
            if let Some((_, refusal)) = state.scan(piece) {
                return Some(refusal);
            }
        }
        None
    }

    fn every_split(input: &str) -> Option<Refusal> {
        let results: Vec<_> = (1..=input.len()).map(|step| scan(input, step)).collect();
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "{input:?}: {results:?}"
        );
        results[0]
    }

    #[test]
    fn long_lines_are_judged_as_short_ones() {
        let pad = " ".repeat(100);
        let long_value = "v".repeat(5000);
        // A padded length is read whole: the 5 bytes after the head are the body, not a head.
        let padded = format!(
            "POST / HTTP/1.1\r\nContent-Length:{pad}5{pad}\r\n\r\nab\ncdGET / HTTP/1.1\r\n\r\n"
        );
        assert_eq!(every_split(&padded), None);
        let repeated = format!(
            "POST / HTTP/1.1\r\ncontent-LENGTH:{pad}5\r\nX-Long: {long_value}\r\nContent-Length: 5\r\n\r\n"
        );
        assert_eq!(every_split(&repeated), Some(Refusal::RepeatedContentLength));
        let both = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: {long_value}chunked\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(every_split(&both), Some(Refusal::LengthAndTransferEncoding));
        // A name longer than the kept prefix is none of the names that matter.
        let other = format!(
            "GET / HTTP/1.1\r\nX-Content-Length-And-Transfer-Encoding: 5\r\nContent-Length: 0\r\n\r\n\
             GET /{long_value} HTTP/1.1\r\n\r\n"
        );
        assert_eq!(every_split(&other), None);
        let bare_lf = format!("GET /{long_value} HTTP/1.1\r\nX: {long_value}\nY: 1\r\n\r\n");
        assert_eq!(every_split(&bare_lf), Some(Refusal::BareLf));
    }

    #[test]
    fn well_framed_requests_pass_however_they_are_split() {
        for ok in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab\ncdGET / HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             3;ext=1\r\na\nb\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\n\n\nanything",
            "CONNECT a:443 HTTP/1.1\r\n\r\n\nraw",
        ] {
            assert_eq!(every_split(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused_however_it_is_split() {
        for (bad, why) in [
            ("GET / HTTP/1.1\nHost: a\n\n", Refusal::BareLf),
            ("GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", Refusal::BareLf),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                Refusal::LengthAndTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
                Refusal::LengthAndTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                Refusal::RepeatedContentLength,
            ),
            // The second request, after a well-framed first one.
            (
                "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\nHost: a\r\n\r\n",
                Refusal::BareLf,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
                Refusal::BareLf,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                Refusal::BadChunkSize,
            ),
        ] {
            assert_eq!(every_split(bad), Some(why), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_stream_ends_in_a_head_no_parser_accepts() {
        use tokio::io::AsyncReadExt;
        let input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n";
        let mut strict = StrictHttp1::new(input);
        let mut out = Vec::new();
        strict.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n");
    }
}
