//! Durable persistence of the dev API's object store in `--data-dir`: a snapshot plus an
//! append-only log, owned by one writer thread.
//!
//! The store calls [`Persistence::open`] at start-up to rebuild its objects and its single
//! resourceVersion counter, [`Persistence::start`] once it can hand out snapshots, then
//! [`Persistence::submit`] for every write while it holds its own lock (so records arrive in
//! resourceVersion order); it answers the client only when the returned receiver resolves, which
//! happens after the record is `fdatasync`ed. The writer group-commits (everything queued goes out
//! with one sync) and compacts the log into a new snapshot when the log grows past a threshold.
//!
//! ```text
//! store.snapshot  "PCSNAP01" rv:u64 count:u64 crc32(preceding 24 bytes):u32
//!                 count x frame(key_len:u32 key json)
//!                 "PCSEND01" crc32(every preceding byte of the file):u32
//! store.log       "PCLOG001" base_rv:u64 crc32(preceding 16 bytes):u32
//!                 frame(rv:u64 op:u8{1 put, 2 delete} key_len:u32 key [json if put])...
//! frame           len:u32 crc32(len bytes):u32 crc32(payload):u32 payload[len]
//! ```
//!
//! Integers are little-endian. Replay loads the snapshot, then applies log records whose rv is
//! above the snapshot's. A damaged record at the end of the log (the file ends inside it, or only
//! zero bytes follow the damage) is a write that was never acknowledged: the log is truncated
//! there and a warning is returned. Damage with real data after it, a damaged snapshot, or
//! resourceVersions that do not increase are [`PersistError::Corrupt`], naming file and offset.
//!
//! Compaction writes `store.snapshot.tmp`, syncs it, renames it over the snapshot and syncs the
//! directory; only then does it start a new log the same way. A crash at any point leaves either
//! the old snapshot with the old log, or the new snapshot with the old log (whose records at or
//! below the snapshot rv are skipped), or the new snapshot with the new log.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use serde_json::Value;
use tokio::sync::oneshot;

/// File name of the snapshot inside the data directory.
pub const SNAPSHOT_FILE: &str = "store.snapshot";
/// File name of the append-only log inside the data directory.
pub const LOG_FILE: &str = "store.log";
/// File name of the lock that keeps a second process out of the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// The largest record (or snapshot entry) payload accepted, written or read.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const SNAPSHOT_TMP: &str = "store.snapshot.tmp";
const LOG_TMP: &str = "store.log.tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PCSNAP01";
const SNAPSHOT_END: &[u8; 8] = b"PCSEND01";
const LOG_MAGIC: &[u8; 8] = b"PCLOG001";
const SNAPSHOT_HEADER_LEN: u64 = 28;
const LOG_HEADER_LEN: u64 = 20;
const FRAME_HEADER_LEN: usize = 12;
const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
/// Records drained into one batch at most, so one sync never waits on an unbounded queue.
const MAX_BATCH: usize = 4096;

/// A failure to load or persist the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    /// A file-system call failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`write log`, `fsync directory`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error (shared: one batch failure is reported to every writer in it).
        #[source]
        source: Arc<io::Error>,
    },
    /// The data on disk is damaged in a way that could lose acknowledged writes.
    #[error("{}: corrupt data at byte offset {offset}: {detail}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged header or record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {} is in use by another process (lock file {LOCK_FILE})", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A record's encoded size exceeds [`MAX_RECORD_BYTES`].
    #[error(
        "record for {key} at resourceVersion {rv} is {size} bytes; the limit is {MAX_RECORD_BYTES}"
    )]
    RecordTooLarge {
        /// resourceVersion of the record.
        rv: u64,
        /// Key of the record.
        key: String,
        /// Encoded size.
        size: usize,
    },
    /// An object could not be serialized (cannot happen for a `serde_json::Value`).
    #[error("cannot encode {key}: {detail}")]
    Encode {
        /// Key of the object.
        key: String,
        /// The serializer's message.
        detail: String,
    },
    /// A record's resourceVersion does not follow the last written one (a store bug).
    #[error("record resourceVersion {rv} is not after the last written {last}")]
    OutOfOrder {
        /// resourceVersion of the rejected record.
        rv: u64,
        /// resourceVersion written last.
        last: u64,
    },
    /// A write failed and the log could not be rolled back; nothing more is accepted until restart.
    #[error("persistence stopped after an unrecoverable error: {0}")]
    Failed(Arc<PersistError>),
    /// The writer is not running (closed, or it could not be started).
    #[error("the persistence writer is not running")]
    Closed,
    /// [`Persistence::start`] was called twice.
    #[error("persistence is already started")]
    AlreadyStarted,
    /// The writer thread panicked.
    #[error("the persistence writer thread panicked")]
    WriterPanicked,
}

/// `Result` with [`PersistError`] as the default error.
pub type Result<T, E = PersistError> = std::result::Result<T, E>;

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PersistError {
    move |e| PersistError::Io {
        op,
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

fn corrupt(file: &Path, offset: u64, detail: impl Into<String>) -> PersistError {
    PersistError::Corrupt {
        file: file.to_path_buf(),
        offset,
        detail: detail.into(),
    }
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create or replace the object under `key`.
    Put {
        /// Store key (`portcullis.dev/routes/team-a/billing`).
        key: String,
        /// The whole object as stored (shared with the store, never copied).
        object: Arc<Value>,
    },
    /// Remove the object under `key` (a no-op on replay if it is absent).
    Delete {
        /// Store key.
        key: String,
    },
}

impl Op {
    /// The key this change concerns.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// One write with the resourceVersion it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The store's resourceVersion after this write; strictly increasing across records.
    pub rv: u64,
    /// The change.
    pub op: Op,
}

/// What [`Persistence::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// Every object, sorted by key.
    pub objects: Vec<(String, Value)>,
    /// The counter to continue from (the highest resourceVersion seen, 0 when empty).
    pub resource_version: u64,
    /// Recoverable findings the caller should log (a torn, unacknowledged last record).
    pub warnings: Vec<String>,
}

/// Called by the writer thread when it compacts: the store's current resourceVersion and all its
/// objects, taken under the store's lock.
pub type SnapshotFn = Box<dyn Fn() -> (u64, Vec<(String, Arc<Value>)>) + Send + 'static>;

/// Writer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistOptions {
    /// Compact once the log file is larger than this many bytes.
    pub compact_after_bytes: u64,
    /// Sync files and directories; turn off only in tests (acknowledgements then mean "written").
    pub fsync: bool,
}

impl Default for PersistOptions {
    fn default() -> Self {
        Self {
            compact_after_bytes: 64 << 20,
            fsync: true,
        }
    }
}

/// Counters of the writer, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersistStats {
    /// Records written to the log.
    pub records: u64,
    /// Batches written (one sync each).
    pub batches: u64,
    /// Compactions completed.
    pub compactions: u64,
    /// Current size of the log file in bytes.
    pub log_bytes: u64,
}

#[derive(Debug, Default)]
struct StatCells {
    records: AtomicU64,
    batches: AtomicU64,
    compactions: AtomicU64,
    log_bytes: AtomicU64,
}

struct Job {
    record: Record,
    ack: oneshot::Sender<Result<()>>,
}

/// Writer and queue between [`Persistence::open`] and [`Persistence::start`].
struct Pending {
    writer: Writer,
    rx: mpsc::Receiver<Job>,
}

/// Handle on the data directory: the queue to the writer thread and its lock.
pub struct Persistence {
    dir: PathBuf,
    tx: Option<mpsc::Sender<Job>>,
    pending: Mutex<Option<Pending>>,
    thread: Option<JoinHandle<Result<()>>>,
    stats: Arc<StatCells>,
    _lock: File,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("dir", &self.dir)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl Persistence {
    /// Opens (creating if missing) the data directory, takes its lock and replays snapshot and
    /// log. A torn last log record is truncated and reported in [`Loaded::warnings`]; anything
    /// else damaged is [`PersistError::Corrupt`] with the file and byte offset.
    pub fn open(dir: &Path) -> Result<(Self, Loaded)> {
        let existed = dir.exists();
        fs::create_dir_all(dir).map_err(io_err("create data directory", dir))?;
        if !existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(PersistError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        for tmp in [SNAPSHOT_TMP, LOG_TMP] {
            let path = dir.join(tmp);
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed unfinished compaction file")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
        }

        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let log_path = dir.join(LOG_FILE);
        let snapshot = read_snapshot(&snapshot_path)?;
        let has_snapshot = snapshot.is_some();
        let (snapshot_rv, mut objects) = snapshot.unwrap_or_default();
        let mut warnings = Vec::new();

        let (log, log_len, log_rv) = match OpenOptions::new().read(true).write(true).open(&log_path)
        {
            Ok(file) => {
                let replay = replay_log(&log_path, &file, snapshot_rv, &mut objects)?;
                if let Some(torn) = replay.torn {
                    file.set_len(replay.len)
                        .map_err(io_err("truncate torn log tail", &log_path))?;
                    file.sync_data().map_err(io_err("fsync log", &log_path))?;
                    warnings.push(format!(
                        "{}: dropped an unacknowledged, partially written record at byte offset {} ({torn}; {} bytes truncated)",
                        log_path.display(),
                        replay.len,
                        replay.file_len - replay.len
                    ));
                }
                (file, replay.len, replay.last_rv)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if has_snapshot {
                    return Err(corrupt(
                        &log_path,
                        0,
                        "the log is missing beside the snapshot, so writes after the snapshot may be lost; \
                         restore the log, or move the data directory away to start empty",
                    ));
                }
                let file = create_log(dir, 0, true)?;
                sync_dir(dir)?;
                (file, LOG_HEADER_LEN, 0)
            }
            Err(e) => return Err(io_err("open", &log_path)(e)),
        };
        let mut log = log;
        log.seek(SeekFrom::Start(log_len))
            .map_err(io_err("seek", &log_path))?;

        let resource_version = snapshot_rv.max(log_rv);
        let stats = Arc::new(StatCells::default());
        stats.log_bytes.store(log_len, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            log_path,
            snapshot_path,
            log,
            log_len,
            last_rv: resource_version,
            snapshot_rv,
            buf: Vec::new(),
            failed: None,
            snapshot_fn: None,
            opts: PersistOptions::default(),
            compact_at: PersistOptions::default().compact_after_bytes,
            stats: Arc::clone(&stats),
        };
        let persistence = Self {
            dir: dir.to_path_buf(),
            tx: Some(tx),
            pending: Mutex::new(Some(Pending { writer, rx })),
            thread: None,
            stats,
            _lock: lock,
        };
        let loaded = Loaded {
            objects: objects.into_iter().collect(),
            resource_version,
            warnings,
        };
        Ok((persistence, loaded))
    }

    /// Starts the writer thread. Call it after the store is built from [`Loaded`] and can answer
    /// `snapshot`; records submitted earlier wait in the queue.
    pub fn start(&mut self, snapshot: SnapshotFn, opts: PersistOptions) -> Result<()> {
        let Pending { mut writer, rx } = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(PersistError::AlreadyStarted)?;
        writer.snapshot_fn = Some(snapshot);
        writer.compact_at = opts.compact_after_bytes;
        writer.opts = opts;
        let handle = std::thread::Builder::new()
            .name("devapi-persist".to_string())
            .spawn(move || writer.run(rx))
            .map_err(io_err("spawn writer thread for", &self.dir))?;
        self.thread = Some(handle);
        Ok(())
    }

    /// Queues one record without blocking. The receiver resolves with `Ok` once the record is
    /// durable, or with the error that kept it from being written.
    pub fn submit(&self, record: Record) -> oneshot::Receiver<Result<()>> {
        let (ack, rx) = oneshot::channel();
        let job = Job { record, ack };
        let refused = match &self.tx {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = refused {
            // The receiver is returned below, so this send cannot fail.
            let _ = job.ack.send(Err(PersistError::Closed));
        }
        rx
    }

    /// The writer's counters.
    pub fn stats(&self) -> PersistStats {
        PersistStats {
            records: self.stats.records.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
            compactions: self.stats.compactions.load(Ordering::Relaxed),
            log_bytes: self.stats.log_bytes.load(Ordering::Relaxed),
        }
    }

    /// Writes everything queued, stops the writer and releases the directory lock. Returns the
    /// error that stopped the writer, if one did. Dropping does the same and logs the error.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        drop(self.tx.take());
        if let Some(handle) = self.thread.take() {
            return handle.join().map_err(|_| PersistError::WriterPanicked)?;
        }
        // Never started: write what was queued on this thread (without compaction).
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match pending {
            Some(Pending { writer, rx }) => writer.run(rx),
            None => Ok(()),
        }
    }
}

impl Drop for Persistence {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %crate::error_chain(&e), dir = %self.dir.display(), "persistence shut down with an error");
        }
    }
}

/// The single owner of the files once started.
struct Writer {
    dir: PathBuf,
    log_path: PathBuf,
    snapshot_path: PathBuf,
    log: File,
    /// Length of the log up to the last durable record; the rollback point.
    log_len: u64,
    /// resourceVersion of the last durable record (or of the snapshot, if later).
    last_rv: u64,
    /// Records at or below this are covered by the durable snapshot.
    snapshot_rv: u64,
    buf: Vec<u8>,
    failed: Option<Arc<PersistError>>,
    snapshot_fn: Option<SnapshotFn>,
    opts: PersistOptions,
    compact_at: u64,
    stats: Arc<StatCells>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) -> Result<()> {
        self.maybe_compact();
        let mut batch = Vec::new();
        while let Ok(job) = rx.recv() {
            batch.push(job);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            self.maybe_compact();
        }
        match self.failed {
            Some(e) => Err(PersistError::Failed(e)),
            None => Ok(()),
        }
    }

    /// Writes the batch with one sync and resolves every acknowledgement.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        if let Some(failed) = &self.failed {
            for job in batch.drain(..) {
                let _ = job.ack.send(Err(PersistError::Failed(Arc::clone(failed))));
            }
            return;
        }
        self.buf.clear();
        let mut waiting = Vec::with_capacity(batch.len());
        let mut last = self.last_rv;
        for Job { record, ack } in batch.drain(..) {
            if record.rv == 0 {
                let _ = ack.send(Err(PersistError::OutOfOrder { rv: 0, last }));
                continue;
            }
            if record.rv <= self.snapshot_rv {
                // Already in the durable snapshot (queued while a compaction read the store).
                let _ = ack.send(Ok(()));
                continue;
            }
            if record.rv <= last {
                tracing::error!(
                    rv = record.rv,
                    last,
                    "persistence record out of order; rejected"
                );
                let _ = ack.send(Err(PersistError::OutOfOrder {
                    rv: record.rv,
                    last,
                }));
                continue;
            }
            match encode_record(&mut self.buf, &record) {
                Ok(()) => {
                    last = record.rv;
                    waiting.push(ack);
                }
                Err(e) => {
                    let _ = ack.send(Err(e));
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        match self.append() {
            Ok(()) => {
                self.last_rv = last;
                self.log_len += self.buf.len() as u64;
                self.stats
                    .records
                    .fetch_add(waiting.len() as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.log_bytes.store(self.log_len, Ordering::Relaxed);
                for ack in waiting {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), records = waiting.len(), "persisting a batch failed");
                self.rollback();
                for ack in waiting {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }

    fn append(&mut self) -> Result<()> {
        self.log
            .write_all(&self.buf)
            .map_err(io_err("write", &self.log_path))?;
        if self.opts.fsync {
            self.log
                .sync_data()
                .map_err(io_err("fsync", &self.log_path))?;
        }
        Ok(())
    }

    /// Cuts the log back to the last durable record so later records do not follow garbage; if
    /// even that fails the writer refuses everything from now on.
    fn rollback(&mut self) {
        let result = self
            .log
            .set_len(self.log_len)
            .and_then(|()| self.log.seek(SeekFrom::Start(self.log_len)).map(drop))
            .and_then(|()| {
                if self.opts.fsync {
                    self.log.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            let e = io_err("roll back", &self.log_path)(e);
            tracing::error!(error = %crate::error_chain(&e), "cannot roll back the log; refusing further writes until restart");
            self.failed = Some(Arc::new(e));
        }
    }

    fn maybe_compact(&mut self) {
        if self.failed.is_some() || self.snapshot_fn.is_none() || self.log_len <= self.compact_at {
            return;
        }
        match self.compact() {
            Ok((rv, count)) => {
                self.compact_at = self.opts.compact_after_bytes;
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
                self.stats.log_bytes.store(self.log_len, Ordering::Relaxed);
                tracing::info!(
                    rv,
                    objects = count,
                    "compacted the store log into a snapshot"
                );
            }
            Err(e) => {
                // The old log stays in use and stays correct; retry after another threshold.
                self.compact_at = self.log_len.saturating_add(self.opts.compact_after_bytes);
                self.stats.log_bytes.store(self.log_len, Ordering::Relaxed);
                tracing::warn!(error = %crate::error_chain(&e), "compaction failed; continuing with the current log");
            }
        }
    }

    fn compact(&mut self) -> Result<(u64, usize)> {
        let Some(snapshot_fn) = &self.snapshot_fn else {
            return Ok((self.snapshot_rv, 0));
        };
        let (rv, objects) = snapshot_fn();
        if rv < self.last_rv {
            return Err(corrupt(
                &self.snapshot_path,
                0,
                format!(
                    "the store offered a snapshot at resourceVersion {rv}, behind the log at {}",
                    self.last_rv
                ),
            ));
        }
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let written = write_snapshot(&tmp, rv, &objects, self.opts.fsync)
            .and_then(|()| fs::rename(&tmp, &self.snapshot_path).map_err(io_err("rename", &tmp)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if self.opts.fsync {
            sync_dir(&self.dir)?;
        }
        self.snapshot_rv = rv;
        self.last_rv = rv;
        self.log = create_log(&self.dir, rv, self.opts.fsync)?;
        self.log_len = LOG_HEADER_LEN;
        if self.opts.fsync
            && let Err(e) = sync_dir(&self.dir)
        {
            // The rename of the new log may not be durable, so a crash could bring back the old
            // log without the records appended from now on: stop acknowledging writes.
            tracing::error!(error = %crate::error_chain(&e), "cannot make the new log durable; refusing further writes until restart");
            self.failed = Some(Arc::new(e.clone()));
            return Err(e);
        }
        Ok((rv, objects.len()))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates a log holding only its header, atomically (temp file, sync, rename), and returns it
/// positioned at its end. The caller syncs the directory; on error the old log is untouched.
fn create_log(dir: &Path, base_rv: u64, fsync: bool) -> Result<File> {
    let tmp = dir.join(LOG_TMP);
    let path = dir.join(LOG_FILE);
    let result = (|| {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let mut header = Vec::with_capacity(LOG_HEADER_LEN as usize);
        header.extend_from_slice(LOG_MAGIC);
        header.extend_from_slice(&base_rv.to_le_bytes());
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        file.write_all(&header).map_err(io_err("write", &tmp))?;
        if fsync {
            file.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends one framed log record to `buf`.
fn encode_record(buf: &mut Vec<u8>, record: &Record) -> Result<()> {
    let start = begin_frame(buf);
    buf.extend_from_slice(&record.rv.to_le_bytes());
    let key = record.op.key();
    buf.push(match record.op {
        Op::Put { .. } => TAG_PUT,
        Op::Delete { .. } => TAG_DELETE,
    });
    let too_large = |buf: &mut Vec<u8>, size| {
        buf.truncate(start);
        PersistError::RecordTooLarge {
            rv: record.rv,
            key: key.to_string(),
            size,
        }
    };
    let Ok(key_len) = u32::try_from(key.len()) else {
        return Err(too_large(buf, key.len()));
    };
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    if let Op::Put { object, .. } = &record.op
        && let Err(e) = serde_json::to_writer(&mut *buf, object.as_ref())
    {
        buf.truncate(start);
        return Err(PersistError::Encode {
            key: key.to_string(),
            detail: e.to_string(),
        });
    }
    finish_frame(buf, start).map_err(|size| too_large(buf, size))
}

fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    start
}

/// Fills in the frame header; `Err(payload size)` if the payload is too large.
fn finish_frame(buf: &mut [u8], start: usize) -> std::result::Result<(), usize> {
    let payload_at = start + FRAME_HEADER_LEN;
    let len = buf.len() - payload_at;
    let len32 = match u32::try_from(len) {
        Ok(n) if len <= MAX_RECORD_BYTES => n,
        _ => return Err(len),
    };
    let len_bytes = len32.to_le_bytes();
    let payload_crc = crc32fast::hash(&buf[payload_at..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
    buf[start + 8..payload_at].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(())
}

/// Writes a complete snapshot file (and syncs it when `fsync`).
fn write_snapshot(
    path: &Path,
    rv: u64,
    objects: &[(String, Arc<Value>)],
    fsync: bool,
) -> Result<()> {
    let file = File::create(path).map_err(io_err("create", path))?;
    let mut out = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_LEN as usize);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&rv.to_le_bytes());
    header.extend_from_slice(&(objects.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&header).map_err(io_err("write", path))?;
    let mut buf = Vec::new();
    for (key, object) in objects {
        buf.clear();
        let start = begin_frame(&mut buf);
        let too_large = |size| PersistError::RecordTooLarge {
            rv,
            key: key.clone(),
            size,
        };
        let key_len = u32::try_from(key.len()).map_err(|_| too_large(key.len()))?;
        buf.extend_from_slice(&key_len.to_le_bytes());
        buf.extend_from_slice(key.as_bytes());
        serde_json::to_writer(&mut buf, object.as_ref()).map_err(|e| PersistError::Encode {
            key: key.clone(),
            detail: e.to_string(),
        })?;
        finish_frame(&mut buf, start).map_err(too_large)?;
        out.write_all(&buf).map_err(io_err("write", path))?;
    }
    out.write_all(SNAPSHOT_END).map_err(io_err("write", path))?;
    let crc = out.hasher.clone().finalize();
    out.write_all(&crc.to_le_bytes())
        .map_err(io_err("write", path))?;
    let file = out
        .inner
        .into_inner()
        .map_err(|e| io_err("write", path)(e.into_error()))?;
    if fsync {
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(())
}

struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts the offset and checksums everything read.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    offset: u64,
}

impl<R: Read> CrcReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
            offset: 0,
        }
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

/// One frame as found on disk.
enum Frame {
    /// Clean end of file.
    End,
    Payload(Vec<u8>),
    /// Damage that only an interrupted append can explain (nothing but zeros follows it).
    Torn(&'static str),
    /// Damage with data after it.
    Bad(String),
}

/// Reads the frame at the reader's offset. The length is checked against its own checksum and
/// the limit before anything is allocated.
fn read_frame<R: Read>(r: &mut CrcReader<R>, file_len: u64) -> io::Result<Frame> {
    let remaining = file_len.saturating_sub(r.offset);
    if remaining == 0 {
        return Ok(Frame::End);
    }
    if remaining < FRAME_HEADER_LEN as u64 {
        return Ok(Frame::Torn("the file ends inside a record header"));
    }
    let mut header = [0u8; FRAME_HEADER_LEN];
    r.read_exact(&mut header)?;
    let [l0, l1, l2, l3, h0, h1, h2, h3, p0, p1, p2, p3] = header;
    let len_bytes = [l0, l1, l2, l3];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if crc32fast::hash(&len_bytes) != u32::from_le_bytes([h0, h1, h2, h3]) {
        if header.iter().all(|b| *b == 0) && rest_is_zero(r)? {
            return Ok(Frame::Torn("only zero bytes follow"));
        }
        return Ok(Frame::Bad("record header checksum mismatch".to_string()));
    }
    if len == 0 || len > MAX_RECORD_BYTES {
        return Ok(Frame::Bad(format!(
            "record length {len} is outside 1..={MAX_RECORD_BYTES}"
        )));
    }
    if len as u64 > remaining - FRAME_HEADER_LEN as u64 {
        return Ok(Frame::Torn("the file ends inside a record"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != u32::from_le_bytes([p0, p1, p2, p3]) {
        if rest_is_zero(r)? {
            return Ok(Frame::Torn("the last record's checksum does not match"));
        }
        return Ok(Frame::Bad("record checksum mismatch".to_string()));
    }
    Ok(Frame::Payload(payload))
}

fn rest_is_zero<R: Read>(r: &mut R) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `key_len:u32 key` at `at`; returns the key and the offset after it.
fn decode_key(p: &[u8], at: usize) -> std::result::Result<(String, usize), String> {
    let len = le_u32(p, at).ok_or("payload too short for the key length")? as usize;
    let start = at + 4;
    let bytes = p
        .get(start..start + len)
        .ok_or("key length runs past the payload")?;
    let key = std::str::from_utf8(bytes).map_err(|e| format!("key is not UTF-8: {e}"))?;
    Ok((key.to_string(), start + len))
}

fn decode_record(p: &[u8]) -> std::result::Result<Record, String> {
    let rv = le_u64(p, 0).ok_or("payload too short for the resourceVersion")?;
    let tag = *p.get(8).ok_or("payload too short for the operation")?;
    let (key, end) = decode_key(p, 9)?;
    let rest = &p[end..];
    let op = match tag {
        TAG_PUT => {
            let object: Value = serde_json::from_slice(rest)
                .map_err(|e| format!("object of {key} is not valid JSON: {e}"))?;
            Op::Put {
                key,
                object: Arc::new(object),
            }
        }
        TAG_DELETE if rest.is_empty() => Op::Delete { key },
        TAG_DELETE => {
            return Err(format!(
                "delete of {key} carries {} extra bytes",
                rest.len()
            ));
        }
        t => return Err(format!("unknown operation {t}")),
    };
    Ok(Record { rv, op })
}

type Objects = BTreeMap<String, Value>;

/// Reads the whole snapshot; `None` if there is none. Any damage is corruption: a snapshot is
/// only ever renamed into place complete and synced.
fn read_snapshot(path: &Path) -> Result<Option<(u64, Objects)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut r = CrcReader::new(BufReader::with_capacity(1 << 20, file));
    let read_err = io_err("read", path);
    if file_len < SNAPSHOT_HEADER_LEN {
        return Err(corrupt(
            path,
            0,
            "the file is shorter than the snapshot header",
        ));
    }
    let mut header = [0u8; SNAPSHOT_HEADER_LEN as usize];
    r.read_exact(&mut header).map_err(read_err)?;
    if &header[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(
            path,
            0,
            "not a Portcullis store snapshot (bad magic)",
        ));
    }
    let crc = le_u32(&header, 24).unwrap_or_default();
    if crc32fast::hash(&header[..24]) != crc {
        return Err(corrupt(path, 0, "snapshot header checksum mismatch"));
    }
    let rv = le_u64(&header, 8).unwrap_or_default();
    let count = le_u64(&header, 16).unwrap_or_default();
    let mut objects = Objects::new();
    for _ in 0..count {
        let offset = r.offset;
        let frame = read_frame(&mut r, file_len).map_err(io_err("read", path))?;
        let payload = match frame {
            Frame::Payload(p) => p,
            Frame::End => {
                return Err(corrupt(
                    path,
                    offset,
                    format!(
                        "the snapshot ends after {} of {count} objects",
                        objects.len()
                    ),
                ));
            }
            Frame::Torn(detail) => return Err(corrupt(path, offset, detail)),
            Frame::Bad(detail) => return Err(corrupt(path, offset, detail)),
        };
        let (key, end) = decode_key(&payload, 0).map_err(|d| corrupt(path, offset, d))?;
        let object: Value = serde_json::from_slice(&payload[end..]).map_err(|e| {
            corrupt(
                path,
                offset,
                format!("object of {key} is not valid JSON: {e}"),
            )
        })?;
        if objects.insert(key.clone(), object).is_some() {
            return Err(corrupt(path, offset, format!("duplicate key {key}")));
        }
    }
    let offset = r.offset;
    let mut end = [0u8; 8];
    if file_len.saturating_sub(offset) < 12 {
        return Err(corrupt(path, offset, "the snapshot trailer is missing"));
    }
    r.read_exact(&mut end).map_err(io_err("read", path))?;
    let want = r.hasher.clone().finalize();
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc).map_err(io_err("read", path))?;
    if &end != SNAPSHOT_END {
        return Err(corrupt(path, offset, "bad snapshot trailer"));
    }
    if u32::from_le_bytes(crc) != want {
        return Err(corrupt(path, offset + 8, "snapshot checksum mismatch"));
    }
    if r.offset != file_len {
        return Err(corrupt(
            path,
            r.offset,
            "unexpected data after the snapshot trailer",
        ));
    }
    Ok(Some((rv, objects)))
}

struct Replay {
    /// Length up to the end of the last good record.
    len: u64,
    file_len: u64,
    /// resourceVersion of the last record (0 if none).
    last_rv: u64,
    /// Why the tail after `len` is dropped, if it is.
    torn: Option<&'static str>,
}

/// Applies the log's records above `snapshot_rv` to `objects`.
fn replay_log(path: &Path, file: &File, snapshot_rv: u64, objects: &mut Objects) -> Result<Replay> {
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut r = CrcReader::new(BufReader::with_capacity(1 << 20, file));
    if file_len < LOG_HEADER_LEN {
        return Err(corrupt(path, 0, "the file is shorter than the log header"));
    }
    let mut header = [0u8; LOG_HEADER_LEN as usize];
    r.read_exact(&mut header).map_err(io_err("read", path))?;
    if &header[..8] != LOG_MAGIC {
        return Err(corrupt(path, 0, "not a Portcullis store log (bad magic)"));
    }
    if crc32fast::hash(&header[..16]) != le_u32(&header, 16).unwrap_or_default() {
        return Err(corrupt(path, 0, "log header checksum mismatch"));
    }
    let base_rv = le_u64(&header, 8).unwrap_or_default();
    if base_rv > snapshot_rv {
        return Err(corrupt(
            path,
            8,
            format!(
                "the log continues a snapshot at resourceVersion {base_rv}, but the snapshot on disk is at {snapshot_rv} (missing or older)"
            ),
        ));
    }
    let mut last_rv = 0;
    loop {
        let offset = r.offset;
        let payload = match read_frame(&mut r, file_len).map_err(io_err("read", path))? {
            Frame::Payload(p) => p,
            Frame::End => {
                return Ok(Replay {
                    len: offset,
                    file_len,
                    last_rv,
                    torn: None,
                });
            }
            Frame::Torn(why) => {
                return Ok(Replay {
                    len: offset,
                    file_len,
                    last_rv,
                    torn: Some(why),
                });
            }
            Frame::Bad(detail) => return Err(corrupt(path, offset, detail)),
        };
        let record = decode_record(&payload).map_err(|d| corrupt(path, offset, d))?;
        if record.rv <= last_rv {
            return Err(corrupt(
                path,
                offset,
                format!("resourceVersion {} does not follow {last_rv}", record.rv),
            ));
        }
        last_rv = record.rv;
        if record.rv <= snapshot_rv {
            continue;
        }
        match record.op {
            Op::Put { key, object } => {
                objects.insert(key, Arc::unwrap_or_clone(object));
            }
            Op::Delete { key } => {
                objects.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::thread;

    /// A stand-in for the store: objects and the counter behind one lock.
    #[derive(Default)]
    struct Store {
        rv: u64,
        objects: BTreeMap<String, Arc<Value>>,
    }

    type Shared = Arc<Mutex<Store>>;

    fn shared_from(loaded: &Loaded) -> Shared {
        Arc::new(Mutex::new(Store {
            rv: loaded.resource_version,
            objects: loaded
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
        }))
    }

    fn snapshot_fn(store: &Shared) -> SnapshotFn {
        let store = Arc::clone(store);
        Box::new(move || {
            let s = store.lock().unwrap();
            let objects = s
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect();
            (s.rv, objects)
        })
    }

    fn no_fsync(compact_after_bytes: u64) -> PersistOptions {
        PersistOptions {
            compact_after_bytes,
            fsync: false,
        }
    }

    /// Applies a write to the store and submits its record under the store lock, as the store does.
    fn write(
        p: &Persistence,
        store: &Shared,
        key: &str,
        object: Option<Value>,
    ) -> oneshot::Receiver<Result<()>> {
        let mut s = store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let op = match object {
            Some(mut o) => {
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                let o = Arc::new(o);
                s.objects.insert(key.to_string(), Arc::clone(&o));
                Op::Put {
                    key: key.to_string(),
                    object: Arc::clone(&o),
                }
            }
            None => {
                s.objects.remove(key);
                Op::Delete {
                    key: key.to_string(),
                }
            }
        };
        p.submit(Record { rv, op })
    }

    fn write_ok(p: &Persistence, store: &Shared, key: &str, object: Option<Value>) {
        write(p, store, key, object)
            .blocking_recv()
            .unwrap()
            .unwrap();
    }

    fn state(store: &Shared) -> (u64, Vec<(String, Value)>) {
        let s = store.lock().unwrap();
        let objects = s
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        (s.rv, objects)
    }

    fn assert_loaded(loaded: &Loaded, store: &Shared) {
        let (rv, objects) = state(store);
        assert_eq!(loaded.resource_version, rv);
        assert_eq!(loaded.objects, objects);
    }

    fn obj(name: &str, n: u64) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": n.to_string()}})
    }

    fn started(dir: &Path, opts: PersistOptions) -> (Persistence, Shared, Loaded) {
        let (mut p, loaded) = Persistence::open(dir).unwrap();
        let store = shared_from(&loaded);
        p.start(snapshot_fn(&store), opts).unwrap();
        (p, store, loaded)
    }

    #[test]
    fn fresh_directory_is_empty_and_creates_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/data");
        let (p, loaded) = Persistence::open(&dir).unwrap();
        assert_eq!(loaded, Loaded::default());
        assert!(dir.join(LOG_FILE).exists());
        assert!(!dir.join(SNAPSHOT_FILE).exists());
        p.close().unwrap();
        let (_p, loaded) = Persistence::open(&dir).unwrap();
        assert_eq!(loaded, Loaded::default());
    }

    #[test]
    fn round_trip_with_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), PersistOptions::default());
        for i in 0..20 {
            write_ok(
                &p,
                &store,
                &format!("v1/configmaps/ns/cm-{}", i % 7),
                Some(obj("x", i)),
            );
        }
        write_ok(&p, &store, "v1/configmaps/ns/cm-3", None);
        write_ok(&p, &store, "v1/configmaps/ns/absent", None);
        let with_unicode =
            json!({"metadata": {"name": "ü"}, "data": {"z": "1", "a": "∞", "m": null}});
        write_ok(&p, &store, "v1/configmaps/ns/ü", Some(with_unicode));
        p.close().unwrap();

        let (p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_loaded(&loaded, &store);
        assert_eq!(loaded.resource_version, 23);
        // key order inside objects survives (preserve_order)
        let (_, o) = loaded
            .objects
            .iter()
            .find(|(k, _)| k.ends_with("ü"))
            .unwrap();
        let keys: Vec<&String> = o["data"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        drop(p);
    }

    #[test]
    fn second_open_is_locked_out() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, _) = Persistence::open(tmp.path()).unwrap();
        assert!(matches!(
            Persistence::open(tmp.path()),
            Err(PersistError::Locked { .. })
        ));
        drop(p);
        Persistence::open(tmp.path()).unwrap();
    }

    #[test]
    fn records_submitted_before_start_or_without_start_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, loaded) = Persistence::open(tmp.path()).unwrap();
        let store = shared_from(&loaded);
        let ack = write(&p, &store, "a", Some(obj("a", 1)));
        p.close().unwrap();
        ack.blocking_recv().unwrap().unwrap();
        let (p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
        p.close().unwrap();
    }

    #[test]
    fn submit_after_close_is_refused_and_start_twice_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut p, store, _) = started(tmp.path(), no_fsync(1 << 20));
        assert!(matches!(
            p.start(snapshot_fn(&store), no_fsync(1)),
            Err(PersistError::AlreadyStarted)
        ));
        p.shutdown().unwrap();
        let r = write(&p, &store, "a", Some(obj("a", 1)))
            .blocking_recv()
            .unwrap();
        assert!(matches!(r, Err(PersistError::Closed)));
    }

    #[test]
    fn out_of_order_and_oversized_records_are_rejected_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(1 << 30));
        write_ok(&p, &store, "a", Some(obj("a", 1)));
        let stale = p.submit(Record {
            rv: 1,
            op: Op::Delete { key: "a".into() },
        });
        assert!(matches!(
            stale.blocking_recv().unwrap(),
            Err(PersistError::OutOfOrder { rv: 1, last: 1 })
        ));
        let huge = Value::String("x".repeat(MAX_RECORD_BYTES));
        let r = p.submit(Record {
            rv: 5,
            op: Op::Put {
                key: "big".into(),
                object: huge.into(),
            },
        });
        assert!(matches!(
            r.blocking_recv().unwrap(),
            Err(PersistError::RecordTooLarge { rv: 5, .. })
        ));
        write_ok(&p, &store, "b", Some(obj("b", 2)));
        p.close().unwrap();
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
    }

    /// Writes `n` records and returns the log length before the last one.
    fn log_with_records(dir: &Path, n: u64) -> (Shared, u64) {
        let (p, store, _) = started(dir, no_fsync(1 << 30));
        for i in 1..n {
            write_ok(&p, &store, &format!("k{}", i % 3), Some(obj("k", i)));
        }
        let before_last = p.stats().log_bytes;
        write_ok(&p, &store, "k-last", Some(obj("last", n)));
        p.close().unwrap();
        (store, before_last)
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    #[test]
    fn torn_tail_at_every_offset_is_truncated_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let (store, before_last) = log_with_records(&base, 6);
        let full_len = fs::metadata(base.join(LOG_FILE)).unwrap().len();
        let (_, mut expected) = state(&store);
        expected.retain(|(k, _)| k != "k-last");

        for cut in before_last..full_len {
            let dir = tmp.path().join(format!("cut-{cut}"));
            copy_dir(&base, &dir);
            let log = OpenOptions::new()
                .write(true)
                .open(dir.join(LOG_FILE))
                .unwrap();
            log.set_len(cut).unwrap();
            drop(log);

            let (mut p, loaded) = Persistence::open(&dir).unwrap();
            assert_eq!(loaded.objects, expected, "cut at {cut}");
            assert_eq!(loaded.resource_version, 5, "cut at {cut}");
            if cut == before_last {
                assert!(loaded.warnings.is_empty());
            } else {
                assert_eq!(loaded.warnings.len(), 1, "cut at {cut}");
                assert!(loaded.warnings[0].contains(&format!("byte offset {before_last}")));
            }
            assert_eq!(fs::metadata(dir.join(LOG_FILE)).unwrap().len(), before_last);
            // the log is usable after truncation, and a second open is clean
            let store = shared_from(&loaded);
            p.start(snapshot_fn(&store), no_fsync(1 << 30)).unwrap();
            write_ok(&p, &store, "after", Some(obj("after", 6)));
            p.close().unwrap();
            let (_p, again) = Persistence::open(&dir).unwrap();
            assert!(again.warnings.is_empty());
            assert_loaded(&again, &store);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn damaged_last_record_and_zero_tail_are_torn_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, before_last) = log_with_records(tmp.path(), 4);
        let path = tmp.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        bytes.extend_from_slice(&[0u8; 5000]);
        fs::write(&path, &bytes).unwrap();
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.resource_version, 3);
        assert!(!loaded.objects.iter().any(|(k, _)| k == "k-last"));
        assert_eq!(fs::metadata(&path).unwrap().len(), before_last);
        drop(store);

        // Zero bytes alone after good records (a file extended but never written).
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = log_with_records(tmp.path(), 3);
        let path = tmp.path().join(LOG_FILE);
        let good_len = fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        drop(f);
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert_loaded(&loaded, &store);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    }

    /// Byte offsets where each log record starts.
    fn record_offsets(bytes: &[u8]) -> Vec<u64> {
        let mut at = LOG_HEADER_LEN as usize;
        let mut out = Vec::new();
        while at < bytes.len() {
            out.push(at as u64);
            at += FRAME_HEADER_LEN + le_u32(bytes, at).unwrap() as usize;
        }
        out
    }

    #[test]
    fn bit_flip_in_the_middle_is_corruption_naming_file_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        log_with_records(&base, 6);
        let original = fs::read(base.join(LOG_FILE)).unwrap();
        let offsets = record_offsets(&original);
        assert_eq!(offsets.len(), 6);
        let victim = offsets[2];
        let next = offsets[3];
        // one flip in each header field and a few in the payload
        for at in [
            victim,
            victim + 4,
            victim + 8,
            victim + 12,
            victim + 20,
            next - 1,
        ] {
            let dir = tmp.path().join(format!("flip-{at}"));
            copy_dir(&base, &dir);
            let mut bytes = original.clone();
            bytes[at as usize] ^= 0x01;
            fs::write(dir.join(LOG_FILE), &bytes).unwrap();
            match Persistence::open(&dir) {
                Err(PersistError::Corrupt {
                    file,
                    offset,
                    detail,
                }) => {
                    assert_eq!(file, dir.join(LOG_FILE));
                    assert_eq!(offset, victim, "flip at {at}: {detail}");
                }
                other => panic!("flip at {at}: expected Corrupt, got {other:?}"),
            }
            // nothing was truncated
            assert_eq!(fs::read(dir.join(LOG_FILE)).unwrap(), bytes);
        }
        // a flip in the log header
        let dir = tmp.path().join("flip-header");
        copy_dir(&base, &dir);
        let mut bytes = original.clone();
        bytes[10] ^= 0x80;
        fs::write(dir.join(LOG_FILE), &bytes).unwrap();
        let err = Persistence::open(&dir).unwrap_err();
        assert!(
            matches!(err, PersistError::Corrupt { offset: 0, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("store.log") && text.contains("offset 0"),
            "{text}"
        );
    }

    fn raw_log(records: &[Record], base_rv: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(LOG_MAGIC);
        bytes.extend_from_slice(&base_rv.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        for r in records {
            encode_record(&mut bytes, r).unwrap();
        }
        bytes
    }

    fn put(rv: u64, key: &str) -> Record {
        Record {
            rv,
            op: Op::Put {
                key: key.into(),
                object: obj(key, rv).into(),
            },
        }
    }

    #[test]
    fn non_increasing_resource_version_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = raw_log(&[put(1, "a"), put(3, "b"), put(2, "c"), put(4, "d")], 0);
        let third = record_offsets(&bytes)[2];
        fs::write(tmp.path().join(LOG_FILE), bytes).unwrap();
        match Persistence::open(tmp.path()) {
            Err(PersistError::Corrupt { offset, detail, .. }) => {
                assert_eq!(offset, third);
                assert!(detail.contains("does not follow 3"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn oversized_length_is_corruption_before_allocation() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = raw_log(&[put(1, "a")], 0);
        let at = bytes.len() as u64;
        let len = (MAX_RECORD_BYTES as u32 + 1).to_le_bytes();
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        fs::write(tmp.path().join(LOG_FILE), bytes).unwrap();
        match Persistence::open(tmp.path()) {
            Err(PersistError::Corrupt { offset, detail, .. }) => {
                assert_eq!(offset, at);
                assert!(detail.contains("outside"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn valid_checksum_with_bad_contents_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = raw_log(&[put(1, "a")], 0);
        let at = bytes.len() as u64;
        let start = begin_frame(&mut bytes);
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.push(9);
        finish_frame(&mut bytes, start).unwrap();
        fs::write(tmp.path().join(LOG_FILE), bytes).unwrap();
        assert!(matches!(
            Persistence::open(tmp.path()),
            Err(PersistError::Corrupt { offset, .. }) if offset == at
        ));
    }

    #[test]
    fn compaction_keeps_state_and_resource_version() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(2048));
        for i in 0..600u64 {
            let key = format!("apps/deployments/ns/d{}", i % 40);
            let object = if i % 7 == 3 { None } else { Some(obj("d", i)) };
            write_ok(&p, &store, &key, object);
        }
        // the last writes are deletes, which must survive the next compaction too
        for i in 0..5 {
            write_ok(&p, &store, &format!("apps/deployments/ns/d{i}"), None);
        }
        let stats = p.stats();
        assert!(stats.compactions >= 5, "{stats:?}");
        assert!(stats.log_bytes < 4096, "{stats:?}");
        p.close().unwrap();
        assert!(fs::metadata(tmp.path().join(LOG_FILE)).unwrap().len() < 4096);

        let (mut p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_loaded(&loaded, &store);
        assert_eq!(loaded.resource_version, 605);
        assert!(!loaded.objects.iter().any(|(k, _)| k.ends_with("/d0")));

        // compaction right after start, when the loaded log is already over the threshold
        let store = shared_from(&loaded);
        p.start(snapshot_fn(&store), no_fsync(1)).unwrap();
        write_ok(&p, &store, "x", Some(obj("x", 1)));
        p.close().unwrap();
        let (_p, again) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&again, &store);
    }

    #[test]
    fn failed_compaction_keeps_the_old_log_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(512));
        // The temporary snapshot cannot be created while a directory sits at its path.
        fs::create_dir(tmp.path().join(SNAPSHOT_TMP)).unwrap();
        for i in 0..40u64 {
            write_ok(&p, &store, &format!("k{}", i % 6), Some(obj("k", i)));
        }
        assert_eq!(p.stats().compactions, 0);
        fs::remove_dir(tmp.path().join(SNAPSHOT_TMP)).unwrap();
        // the retry threshold has grown, so compaction resumes later
        for i in 0..40u64 {
            write_ok(&p, &store, &format!("k{}", i % 6), Some(obj("k", i)));
        }
        assert!(p.stats().compactions > 0);
        p.close().unwrap();
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);

        // A store that offers a snapshot behind the log is refused; the log stays authoritative.
        let tmp = tempfile::tempdir().unwrap();
        let (mut p, loaded) = Persistence::open(tmp.path()).unwrap();
        let store = shared_from(&loaded);
        p.start(Box::new(|| (0, Vec::new())), no_fsync(256))
            .unwrap();
        for i in 0..20u64 {
            write_ok(&p, &store, &format!("k{i}"), Some(obj("k", i)));
        }
        assert_eq!(p.stats().compactions, 0);
        p.close().unwrap();
        assert!(!tmp.path().join(SNAPSHOT_FILE).exists());
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
    }

    #[test]
    fn crash_between_snapshot_rename_and_new_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(1 << 30));
        for i in 0..30u64 {
            write_ok(&p, &store, &format!("k{}", i % 4), Some(obj("k", i)));
            if i == 12 {
                // The compaction wrote a snapshot of this moment, then the process died before it
                // replaced the log: the snapshot sits beside the full old log.
                let (rv, objects) = snapshot_fn(&store)();
                write_snapshot(&tmp.path().join(SNAPSHOT_FILE), rv, &objects, false).unwrap();
            }
        }
        write_ok(&p, &store, "k1", None);
        p.close().unwrap();
        // leftovers of an interrupted compaction are ignored and removed
        fs::write(tmp.path().join(SNAPSHOT_TMP), b"half a snapshot").unwrap();
        fs::write(tmp.path().join(LOG_TMP), b"PCLOG001").unwrap();

        let (p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_loaded(&loaded, &store);
        assert!(!tmp.path().join(SNAPSHOT_TMP).exists());
        assert!(!tmp.path().join(LOG_TMP).exists());
        drop(p);

        // Snapshot at the very end of the log: every log record is at or below it.
        let (rv, objects) = snapshot_fn(&store)();
        write_snapshot(&tmp.path().join(SNAPSHOT_FILE), rv, &objects, false).unwrap();
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
    }

    #[test]
    fn snapshot_damage_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(256));
        for i in 0..50 {
            write_ok(&p, &store, &format!("k{i}"), Some(obj("k", i)));
        }
        p.close().unwrap();
        let path = tmp.path().join(SNAPSHOT_FILE);
        let original = fs::read(&path).unwrap();
        for at in [
            3,
            12,
            30,
            original.len() / 2,
            original.len() - 6,
            original.len() - 1,
        ] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            let err = Persistence::open(tmp.path()).unwrap_err();
            assert!(
                matches!(&err, PersistError::Corrupt { file, .. } if *file == path),
                "flip at {at}: {err}"
            );
        }
        for len in [0, 10, 40, original.len() - 1] {
            fs::write(&path, &original[..len]).unwrap();
            let err = Persistence::open(tmp.path()).unwrap_err();
            assert!(
                matches!(err, PersistError::Corrupt { .. }),
                "cut at {len}: {err}"
            );
        }
        let mut longer = original.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(matches!(
            Persistence::open(tmp.path()),
            Err(PersistError::Corrupt { .. })
        ));
        fs::write(&path, &original).unwrap();
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
    }

    #[test]
    fn missing_log_or_stale_snapshot_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(256));
        for i in 0..50 {
            write_ok(&p, &store, &format!("k{i}"), Some(obj("k", i)));
        }
        p.close().unwrap();
        let snapshot = fs::read(tmp.path().join(SNAPSHOT_FILE)).unwrap();

        fs::remove_file(tmp.path().join(SNAPSHOT_FILE)).unwrap();
        let err = Persistence::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("missing or older"), "{err}");

        fs::write(tmp.path().join(SNAPSHOT_FILE), snapshot).unwrap();
        fs::remove_file(tmp.path().join(LOG_FILE)).unwrap();
        let err = Persistence::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("log is missing"), "{err}");
    }

    #[test]
    fn group_commit_from_many_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), PersistOptions::default());
        let p = Arc::new(p);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = Arc::clone(&p);
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    for i in 0..100u64 {
                        let key = format!("t{t}/k{}", i % 10);
                        let object = if i % 9 == 8 { None } else { Some(obj("k", i)) };
                        write(&p, &store, &key, object)
                            .blocking_recv()
                            .unwrap()
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = p.stats();
        assert_eq!(stats.records, 800);
        assert!(stats.batches < 800, "no batching happened: {stats:?}");
        Arc::into_inner(p).unwrap().close().unwrap();
        // replay checks that resourceVersions strictly increase through the log
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_loaded(&loaded, &store);
        assert_eq!(loaded.resource_version, 800);
    }

    #[test]
    fn concurrent_writes_during_compaction_keep_every_ack() {
        let tmp = tempfile::tempdir().unwrap();
        let (p, store, _) = started(tmp.path(), no_fsync(4096));
        let p = Arc::new(p);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = Arc::clone(&p);
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    let acks: Vec<_> = (0..300u64)
                        .map(|i| write(&p, &store, &format!("t{t}/k{}", i % 25), Some(obj("k", i))))
                        .collect();
                    for ack in acks {
                        ack.blocking_recv().unwrap().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        Arc::into_inner(p).unwrap().close().unwrap();
        // (the writer may compact after the last acknowledgement, so look once it has stopped)
        assert!(tmp.path().join(SNAPSHOT_FILE).exists(), "never compacted");
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert_loaded(&loaded, &store);
        assert_eq!(loaded.resource_version, 1200);
    }

    #[test]
    fn write_failure_is_reported_without_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut p, loaded) = Persistence::open(tmp.path()).unwrap();
        // Swap the log for a read-only handle: writes and the rollback both fail.
        {
            let pending = p.pending.get_mut().unwrap().as_mut().unwrap();
            pending.writer.log = File::open(tmp.path().join(LOG_FILE)).unwrap();
        }
        let store = shared_from(&loaded);
        p.start(snapshot_fn(&store), no_fsync(1 << 30)).unwrap();
        let first = write(&p, &store, "a", Some(obj("a", 1)))
            .blocking_recv()
            .unwrap();
        assert!(matches!(first, Err(PersistError::Io { .. })), "{first:?}");
        let second = write(&p, &store, "b", Some(obj("b", 2)))
            .blocking_recv()
            .unwrap();
        assert!(matches!(second, Err(PersistError::Failed(_))), "{second:?}");
        assert!(matches!(p.close(), Err(PersistError::Failed(_))));
        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        assert!(loaded.objects.is_empty());
    }

    const CHILD_ENV: &str = "PORTCULLIS_PERSIST_SIGKILL_CHILD_DIR";
    const CHILD_ACKS: u64 = 150;

    /// The child's write number `rv`: a put, or every fifth a delete.
    fn child_op(rv: u64) -> (String, Option<Value>) {
        let object = if rv.is_multiple_of(5) {
            None
        } else {
            Some(obj("k", rv))
        };
        (format!("k{}", rv % 40), object)
    }

    /// Run by `acknowledged_writes_survive_sigkill` in a child process: writes until killed,
    /// printing the store's state after every acknowledgement.
    #[test]
    #[ignore = "child process of acknowledged_writes_survive_sigkill"]
    fn sigkill_child() {
        let Ok(dir) = std::env::var(CHILD_ENV) else {
            return;
        };
        let opts = PersistOptions {
            compact_after_bytes: 8 << 10,
            fsync: true,
        };
        let (p, store, _) = started(Path::new(&dir), opts);
        let started_at = std::time::Instant::now();
        while started_at.elapsed() < std::time::Duration::from_secs(60) {
            let rv = store.lock().unwrap().rv + 1;
            let (key, object) = child_op(rv);
            write(&p, &store, &key, object)
                .blocking_recv()
                .unwrap()
                .unwrap();
            let (_, objects) = state(&store);
            println!("ACKED {rv} {}", serde_json::to_string(&objects).unwrap());
        }
    }

    #[test]
    fn acknowledged_writes_survive_sigkill() {
        let tmp = tempfile::tempdir().unwrap();
        let name = module_path!()
            .split_once("::")
            .map(|(_, rest)| format!("{rest}::sigkill_child"))
            .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                name.as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last: Option<(u64, Vec<(String, Value)>)> = None;
        let mut parse = |line: String| {
            // The kill can cut the child's last line short: only whole lines count as acked.
            if let Some((rv, objects)) = line.strip_prefix("ACKED ").and_then(|r| r.split_once(' '))
                && let (Ok(rv), Ok(objects)) = (rv.parse(), serde_json::from_str(objects))
            {
                last = Some((rv, objects));
            }
            last.as_ref().map_or(0, |(rv, _)| *rv)
        };
        for line in lines.by_ref() {
            if parse(line.unwrap()) >= CHILD_ACKS {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Everything printed before the kill was acknowledged too.
        for line in lines {
            let Ok(line) = line else { break };
            parse(line);
        }
        let (acked_rv, acked) = last.expect("the child acknowledged nothing");
        assert!(acked_rv >= CHILD_ACKS);
        assert!(
            tmp.path().join(SNAPSHOT_FILE).exists(),
            "the child never compacted"
        );

        let (_p, loaded) = Persistence::open(tmp.path()).unwrap();
        // At most the one write in flight at the kill may have become durable unacknowledged.
        let mut expected: BTreeMap<String, Value> = acked.into_iter().collect();
        if loaded.resource_version == acked_rv + 1 {
            let (key, object) = child_op(acked_rv + 1);
            match object {
                Some(mut o) => {
                    o["metadata"]["resourceVersion"] = json!((acked_rv + 1).to_string());
                    expected.insert(key, o);
                }
                None => {
                    expected.remove(&key);
                }
            }
        } else {
            assert_eq!(loaded.resource_version, acked_rv, "{:?}", loaded.warnings);
        }
        assert_eq!(loaded.objects, expected.into_iter().collect::<Vec<_>>());
    }
}
