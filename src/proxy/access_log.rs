//! The access log: one line per request on the target `portcullis::access`, written by
//! [`super::Proxy::handle`] through an [`AccessLog`].
//!
//! Two sinks, one line. [`AccessLog::Events`] (the default, and what in-process tests capture)
//! emits a `tracing` event that the installed subscriber formats and writes. [`AccessLog::lines`]
//! (the binary, when stderr is not a terminal) writes the same bytes tracing-subscriber would —
//! its full text format or its flattened JSON, setting `log.format` — without it: the fields
//! are fixed, so the worker formats them into a per-thread buffer and appends the line to a
//! shared one, and a writer thread writes what accumulated in one `write(2)` at most
//! [`BATCH_WINDOW`] later. Per request that is ~250 bytes copied under a mutex instead of
//! tracing-subscriber's formatter and a `write(2)`.
//!
//! Memory is bounded: when more than [`MAX_PENDING`] bytes wait (the writer is ~30k lines
//! behind), new lines are dropped and counted rather than blocking a runtime worker, and the
//! writer reports the count in a `warn` line. Dropping the [`AccessLogWriter`] (`main` does, after
//! the listeners have drained) writes every pending line before the process exits.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Version};

/// The log target of access lines.
pub const TARGET: &str = "portcullis::access";
/// The longest a line waits before it is written.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Pending bytes beyond which new lines are dropped (and counted).
pub const MAX_PENDING: usize = 8 << 20;
/// Pending bytes at which the writer is woken before the window ends.
const WRITE_EARLY: usize = 256 << 10;

/// What one access-log line says, borrowed from the request being answered.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// `http` or `https`.
    pub listener: &'static str,
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The request's HTTP version.
    pub version: Version,
    /// The request's method.
    pub method: &'a Method,
    /// The canonical host, or `-`.
    pub host: &'a str,
    /// The path, never the query.
    pub path: &'a str,
    /// Which endpoint answered (`route`, `token`, `redirect`, ...).
    pub endpoint: &'static str,
    /// The route's `namespace` and `name`, when one matched.
    pub route: Option<(&'a str, &'a str)>,
    /// The authenticated identity's subject, or `-`.
    pub identity: &'a str,
    /// The client, or `-`.
    pub client_id: &'a str,
    /// `allow`, `deny` or `-`.
    pub decision: &'static str,
    /// Why, or `-`.
    pub reason: &'a str,
    /// The response status.
    pub status: u16,
    /// Time to the response head, in microseconds.
    pub latency_us: u64,
    /// The routing table generation the request was served with.
    pub generation: u64,
}

/// The line format, as setting `log.format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// tracing-subscriber's full text format, without colours.
    Text,
    /// tracing-subscriber's JSON format with the event's fields flattened.
    Json,
}

/// Where access-log lines go; cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum AccessLog {
    /// A `tracing` event per request, formatted and written by the installed subscriber.
    #[default]
    Events,
    /// Lines formatted here and written in batches by an [`AccessLogWriter`]'s thread.
    Lines(Arc<Lines>),
}

/// The shared state of [`AccessLog::Lines`].
#[derive(Debug)]
pub struct Lines {
    format: LineFormat,
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closing: bool,
}

/// Owns the writer thread of an [`AccessLog::Lines`]; dropping it writes what is pending and
/// stops the thread.
#[derive(Debug)]
pub struct AccessLogWriter {
    lines: Arc<Lines>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// A sink that formats lines as `format` and writes them to `out` from a thread of its own.
    pub fn lines<W: Write + Send + 'static>(
        format: LineFormat,
        out: W,
    ) -> std::io::Result<(Self, AccessLogWriter)> {
        let lines = Arc::new(Lines {
            format,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let shared = Arc::clone(&lines);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(&shared, out))?;
        Ok((
            AccessLog::Lines(Arc::clone(&lines)),
            AccessLogWriter {
                lines,
                thread: Some(thread),
            },
        ))
    }

    /// Logs one request, unless the `portcullis::access` target is filtered out.
    pub fn record(&self, entry: &Entry<'_>) {
        match self {
            AccessLog::Events => emit_event(entry),
            AccessLog::Lines(lines) => {
                if tracing::enabled!(target: "portcullis::access", tracing::Level::INFO) {
                    lines.push(entry);
                }
            }
        }
    }
}

fn emit_event(e: &Entry<'_>) {
    tracing::info!(
        target: "portcullis::access",
        listener = e.listener,
        peer = %e.peer,
        version = ?e.version,
        method = %e.method,
        host = e.host,
        path = %e.path,
        endpoint = e.endpoint,
        route = %RouteName(e.route),
        identity = e.identity,
        client_id = e.client_id,
        decision = e.decision,
        reason = %e.reason,
        status = e.status,
        latency_us = e.latency_us,
        generation = e.generation,
        "request"
    );
}

struct RouteName<'a>(Option<(&'a str, &'a str)>);

impl std::fmt::Display for RouteName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((namespace, name)) => write!(f, "{namespace}/{name}"),
            None => f.write_str("-"),
        }
    }
}

/// Per worker thread: the line being formatted and the formatted current second.
struct Scratch {
    line: Vec<u8>,
    second: u64,
    date_time: [u8; 19],
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: Vec::new(), second: u64::MAX, date_time: [0; 19] })
    };
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, entry: &Entry<'_>) {
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return emit_event(entry);
            };
            let scratch = &mut *scratch;
            scratch.line.clear();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            if now.as_secs() != scratch.second {
                scratch.second = now.as_secs();
                scratch.date_time = date_time(now.as_secs());
            }
            let line = &mut scratch.line;
            line.extend_from_slice(if self.format == LineFormat::Json {
                b"{\"timestamp\":\""
            } else {
                b""
            });
            line.extend_from_slice(&scratch.date_time);
            line.push(b'.');
            let micros = now.subsec_micros();
            line.extend_from_slice(&[
                digit(micros / 100_000),
                digit(micros / 10_000),
                digit(micros / 1_000),
                digit(micros / 100),
                digit(micros / 10),
                digit(micros),
            ]);
            line.push(b'Z');
            match self.format {
                LineFormat::Text => text(line, entry),
                LineFormat::Json => json(line, entry),
            }
            let mut pending = self.lock();
            let before = pending.bytes.len();
            if before + line.len() > MAX_PENDING {
                pending.dropped += 1;
                return;
            }
            pending.bytes.extend_from_slice(line);
            let after = pending.bytes.len();
            drop(pending);
            if before == 0 || (before < WRITE_EARLY && after >= WRITE_EARLY) {
                self.wake.notify_one();
            }
        });
    }
}

impl Drop for AccessLogWriter {
    fn drop(&mut self) {
        self.lines.lock().closing = true;
        self.lines.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: waits for a first line, lets more gather for up to [`BATCH_WINDOW`] (or
/// until [`WRITE_EARLY`] bytes wait), writes them all, and repeats until closed.
fn write_batches<W: Write>(lines: &Lines, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let (dropped, closing) = {
            let mut pending = lines.lock();
            while pending.bytes.is_empty() && pending.dropped == 0 && !pending.closing {
                pending = lines
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let deadline = Instant::now() + BATCH_WINDOW;
            while !pending.closing && pending.bytes.len() < WRITE_EARLY {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = lines
                    .wake
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            (std::mem::take(&mut pending.dropped), pending.closing)
        };
        // As tracing-subscriber's writer, a failed write is not reported anywhere else.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "access log lines dropped: the log output could not keep up"
            );
        }
        if closing {
            return;
        }
    }
}

fn text(line: &mut Vec<u8>, e: &Entry<'_>) {
    line.extend_from_slice(b"  INFO portcullis::access: request listener=");
    debug_str(line, e.listener);
    line.extend_from_slice(b" peer=");
    display(line, e.peer);
    line.extend_from_slice(b" version=");
    line.extend_from_slice(version(e.version).as_bytes());
    line.extend_from_slice(b" method=");
    line.extend_from_slice(e.method.as_str().as_bytes());
    line.extend_from_slice(b" host=");
    debug_str(line, e.host);
    line.extend_from_slice(b" path=");
    line.extend_from_slice(e.path.as_bytes());
    line.extend_from_slice(b" endpoint=");
    debug_str(line, e.endpoint);
    line.extend_from_slice(b" route=");
    route(line, e.route);
    line.extend_from_slice(b" identity=");
    debug_str(line, e.identity);
    line.extend_from_slice(b" client_id=");
    debug_str(line, e.client_id);
    line.extend_from_slice(b" decision=");
    debug_str(line, e.decision);
    line.extend_from_slice(b" reason=");
    line.extend_from_slice(e.reason.as_bytes());
    line.extend_from_slice(b" status=");
    number(line, u64::from(e.status));
    line.extend_from_slice(b" latency_us=");
    number(line, e.latency_us);
    line.extend_from_slice(b" generation=");
    number(line, e.generation);
    line.push(b'\n');
}

fn json(line: &mut Vec<u8>, e: &Entry<'_>) {
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"listener\":");
    json_str(line, e.listener);
    line.extend_from_slice(b",\"peer\":\"");
    display(line, e.peer);
    line.extend_from_slice(b"\",\"version\":\"");
    line.extend_from_slice(version(e.version).as_bytes());
    line.extend_from_slice(b"\",\"method\":");
    json_str(line, e.method.as_str());
    line.extend_from_slice(b",\"host\":");
    json_str(line, e.host);
    line.extend_from_slice(b",\"path\":");
    json_str(line, e.path);
    line.extend_from_slice(b",\"endpoint\":");
    json_str(line, e.endpoint);
    line.extend_from_slice(b",\"route\":");
    match e.route {
        Some((namespace, name)) => {
            line.push(b'"');
            json_escaped(line, namespace);
            line.push(b'/');
            json_escaped(line, name);
            line.push(b'"');
        }
        None => line.extend_from_slice(b"\"-\""),
    }
    line.extend_from_slice(b",\"identity\":");
    json_str(line, e.identity);
    line.extend_from_slice(b",\"client_id\":");
    json_str(line, e.client_id);
    line.extend_from_slice(b",\"decision\":");
    json_str(line, e.decision);
    line.extend_from_slice(b",\"reason\":");
    json_str(line, e.reason);
    line.extend_from_slice(b",\"status\":");
    number(line, u64::from(e.status));
    line.extend_from_slice(b",\"latency_us\":");
    number(line, e.latency_us);
    line.extend_from_slice(b",\"generation\":");
    number(line, e.generation);
    line.extend_from_slice(b",\"target\":\"portcullis::access\"}\n");
}

/// `namespace/name`, or `-`.
fn route(line: &mut Vec<u8>, route: Option<(&str, &str)>) {
    match route {
        Some((namespace, name)) => {
            line.extend_from_slice(namespace.as_bytes());
            line.push(b'/');
            line.extend_from_slice(name.as_bytes());
        }
        None => line.push(b'-'),
    }
}

/// As `format!("{:?}", s)`, which is how tracing-subscriber writes a `&str` field; printable
/// ASCII without quotes or backslashes (all but odd requests) is copied as it is.
fn debug_str(line: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push(b'"');
        line.extend_from_slice(s.as_bytes());
        line.push(b'"');
    } else {
        let _ = write!(line, "{s:?}");
    }
}

/// A JSON string, escaped as serde_json (which tracing-subscriber uses) escapes it.
fn json_str(line: &mut Vec<u8>, s: &str) {
    line.push(b'"');
    json_escaped(line, s);
    line.push(b'"');
}

/// The inside of [`json_str`].
fn json_escaped(line: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        line.extend_from_slice(s.as_bytes());
    } else {
        let quoted = serde_json::Value::from(s).to_string();
        line.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
    }
}

fn display(line: &mut Vec<u8>, value: impl std::fmt::Display) {
    let _ = write!(line, "{value}");
}

fn number(line: &mut Vec<u8>, n: u64) {
    line.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// As `format!("{:?}", version)`.
fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn digit(n: u32) -> u8 {
    // `n % 10` is below 10, so the cast is exact.
    b'0' + (n % 10) as u8
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC for seconds since the Unix epoch (years up to 9999).
fn date_time(unix: u64) -> [u8; 19] {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Days to the civil date (H. Hinnant's `civil_from_days`), for days after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let (y1, y2) = (two(year / 100), two(year));
    let (mo, d) = (two(month), two(day));
    let (h, mi, s) = (two(secs / 3_600), two(secs / 60 % 60), two(secs % 60));
    [
        y1[0], y1[1], y2[0], y2[1], b'-', mo[0], mo[1], b'-', d[0], d[1], b'T', h[0], h[1], b':',
        mi[0], mi[1], b':', s[0], s[1],
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    /// A sink both sides write to.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// tracing-subscriber's clock, with the time a line was formatted recorded, so lines can be
    /// compared without their timestamps.
    struct Fixed;
    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("TIMESTAMP")
        }
    }

    fn method() -> &'static Method {
        static GET: Method = Method::GET;
        &GET
    }

    fn entries() -> Vec<Entry<'static>> {
        let base = Entry {
            listener: "https",
            peer: "127.0.0.1".parse().unwrap(),
            version: Version::HTTP_11,
            method: method(),
            host: "api.example.com",
            path: "/v1/items/7",
            endpoint: "route",
            route: Some(("team-a", "api")),
            identity: "serviceaccount:team-a/bot",
            client_id: "pcc_abc",
            decision: "allow",
            reason: "policy",
            status: 200,
            latency_us: 1234,
            generation: 42,
        };
        vec![
            base,
            Entry {
                listener: "http",
                peer: "::1".parse().unwrap(),
                version: Version::HTTP_2,
                host: "-",
                path: "/a%20b/\"q\"/ü\\",
                endpoint: "invalid_host",
                route: None,
                identity: "-",
                client_id: "odd \"id\"\n\u{7f}\u{85}é",
                decision: "-",
                reason: "policy says \"no\"",
                status: 400,
                latency_us: 0,
                generation: u64::MAX,
                ..base
            },
        ]
    }

    /// Formats `entries` with tracing-subscriber (as `main` configures it) and with
    /// [`AccessLog::lines`], timestamps replaced.
    fn both(format: LineFormat) -> (String, String) {
        let theirs = Captured::default();
        let sink = theirs.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(Fixed)
            .with_writer(move || sink.clone());
        let dispatch = match format {
            LineFormat::Json => tracing::Dispatch::new(builder.json().flatten_event(true).finish()),
            LineFormat::Text => tracing::Dispatch::new(builder.finish()),
        };
        let ours = Captured::default();
        tracing::dispatcher::with_default(&dispatch, || {
            let (log, writer) = AccessLog::lines(format, ours.clone()).unwrap();
            for entry in entries() {
                AccessLog::Events.record(&entry);
                log.record(&entry);
            }
            drop(writer);
        });
        let stamp = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").unwrap();
        (
            theirs.text(),
            stamp.replace_all(&ours.text(), "TIMESTAMP").into_owned(),
        )
    }

    #[test]
    fn text_lines_are_what_tracing_subscriber_writes() {
        let (theirs, ours) = both(LineFormat::Text);
        assert_eq!(theirs.lines().count(), 2, "{theirs}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn json_lines_are_what_tracing_subscriber_writes() {
        let (theirs, ours) = both(LineFormat::Json);
        assert_eq!(theirs.lines().count(), 2, "{theirs}");
        assert_eq!(ours, theirs);
        for line in ours.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        for unix in [0, 951_782_400, 1_709_164_799, 1_795_962_604, 4_102_444_800] {
            let ours = String::from_utf8(date_time(unix).to_vec()).unwrap();
            let jiff = jiff::Timestamp::from_second(i64::try_from(unix).unwrap()).unwrap();
            assert_eq!(ours, jiff.strftime("%Y-%m-%dT%H:%M:%S").to_string());
        }
    }

    #[test]
    fn a_filtered_out_target_writes_nothing() {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info,portcullis::access=off")
            .with_writer(std::io::sink)
            .finish();
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber, || {
            let (log, writer) = AccessLog::lines(LineFormat::Text, out.clone()).unwrap();
            log.record(&entries()[0]);
            drop(writer);
        });
        assert_eq!(out.text(), "");
    }

    /// An output that blocks until released, counting what reached it.
    #[derive(Clone)]
    struct Stuck {
        released: Arc<AtomicBool>,
        got: Captured,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            while !self.released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.got.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_at_close_and_memory_stays_bounded_when_the_output_stalls() {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        let stuck = Stuck {
            released: Arc::new(AtomicBool::new(false)),
            got: Captured::default(),
        };
        let entry = entries()[0];
        tracing::subscriber::with_default(subscriber, || {
            let (log, writer) = AccessLog::lines(LineFormat::Text, stuck.clone()).unwrap();
            // The first batch gets stuck in the output; the rest pile up to the bound.
            log.record(&entry);
            std::thread::sleep(BATCH_WINDOW * 2);
            let line_len = 250;
            let lines = MAX_PENDING / line_len + 1_000;
            for _ in 0..lines {
                log.record(&entry);
            }
            let AccessLog::Lines(shared) = &log else {
                unreachable!()
            };
            let pending = shared.lock();
            assert!(pending.bytes.len() <= MAX_PENDING);
            assert!(pending.dropped > 0, "nothing was dropped");
            drop(pending);
            stuck.released.store(true, Ordering::SeqCst);
            drop(writer);
        });
        let written = stuck.got.text();
        let line_len = written.lines().next().map_or(0, str::len);
        assert!(
            written.lines().count() > MAX_PENDING / (line_len + 1) - 10,
            "{} lines of {line_len} bytes",
            written.lines().count()
        );
        assert!(written.lines().all(|l| l.ends_with(" generation=42")));
    }

    #[test]
    fn a_line_is_written_without_waiting_for_close() {
        let out = Captured::default();
        let (log, _writer) = AccessLog::lines(LineFormat::Json, out.clone()).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || log.record(&entries()[0]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(out.text().ends_with("\"target\":\"portcullis::access\"}\n"));
    }
}
