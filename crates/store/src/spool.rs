//! The decision log's local spool: an append-only JSON-lines file, capped in size, that holds
//! records while the queue is full or the database is down.
//!
//! Two files in `spool_dir`:
//! - `decisions.spool.jsonl` (active): appended to, one record per line.
//! - `decisions.replay.jsonl`: the active file renamed when a replay starts, so appends go on
//!   without waiting for the replay. It is deleted once every line is in the database. A crash
//!   at any point leaves both files to be replayed at the next start; the decision id is the
//!   table's key, so lines already written are skipped, not doubled.
//!
//! One directory belongs to one process. The cap counts both files; a record that would cross
//! it is dropped, counted and logged at error level.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::decision::DecisionRecord;
use super::log::DecisionLogMetrics;

pub(crate) const ACTIVE_FILE: &str = "decisions.spool.jsonl";
pub(crate) const REPLAY_FILE: &str = "decisions.replay.jsonl";

/// How often a dropped-records error is repeated while drops go on.
const DROP_LOG_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Spool {
    dir: PathBuf,
    active_path: PathBuf,
    replay_path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

struct State {
    file: File,
    active_bytes: u64,
    replay_bytes: u64,
    /// Appended since the last fsync.
    dirty: bool,
    drops_since_log: u64,
    last_drop_log: Option<Instant>,
}

/// What became of the records handed to [`Spool::append`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub spooled: u64,
    pub dropped: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ends_with_newline(path: &Path, len: u64) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let active_path = dir.join(ACTIVE_FILE);
        let replay_path = dir.join(REPLAY_FILE);
        let mut file = open_append(&active_path)?;
        let mut active_bytes = file.metadata()?.len();
        if active_bytes > 0 && !ends_with_newline(&active_path, active_bytes)? {
            // A crash cut the last line short. End it, so the next record starts a line of
            // its own; replay skips (and counts) the torn one.
            file.write_all(b"\n")?;
            file.sync_data()?;
            active_bytes += 1;
        }
        let replay_bytes = match std::fs::metadata(&replay_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Spool {
            dir: dir.to_path_buf(),
            active_path,
            replay_path,
            max_bytes,
            state: Mutex::new(State {
                file,
                active_bytes,
                replay_bytes,
                dirty: false,
                drops_since_log: 0,
                last_drop_log: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves byte counts that are at worst stale.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes waiting in both files.
    pub(crate) fn bytes(&self) -> u64 {
        let s = self.lock();
        s.active_bytes + s.replay_bytes
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends records as JSON lines (no fsync: see [`Spool::sync`]). Records that would take
    /// the spool past its cap are dropped, counted and logged.
    pub(crate) fn append(
        &self,
        records: &[DecisionRecord],
        metrics: &DecisionLogMetrics,
    ) -> Appended {
        let mut lines: Vec<Vec<u8>> = Vec::with_capacity(records.len());
        let mut out = Appended::default();
        for r in records {
            match serde_json::to_vec(r) {
                Ok(mut line) => {
                    line.push(b'\n');
                    lines.push(line);
                }
                Err(e) => {
                    tracing::error!(decision_id = %r.decision_id, error = %e,
                        "decision record cannot be serialized; dropped");
                    out.dropped += 1;
                }
            }
        }
        let mut s = self.lock();
        let mut buf = Vec::new();
        let mut kept = 0u64;
        for line in lines {
            let used = s.active_bytes + s.replay_bytes + buf.len() as u64;
            if used + line.len() as u64 > self.max_bytes {
                out.dropped += 1;
            } else {
                buf.extend_from_slice(&line);
                kept += 1;
            }
        }
        if !buf.is_empty() {
            match s.file.write_all(&buf) {
                Ok(()) => {
                    s.active_bytes += buf.len() as u64;
                    s.dirty = true;
                    out.spooled += kept;
                }
                Err(e) => {
                    // A short write may leave a partial line; replay skips it. Resync the count.
                    s.active_bytes = s.file.metadata().map(|m| m.len()).unwrap_or(s.active_bytes);
                    tracing::error!(path = %self.active_path.display(), error = %e,
                        records = kept, "cannot write the decision-log spool; records dropped");
                    out.dropped += kept;
                }
            }
        }
        if out.dropped > 0 {
            s.drops_since_log += out.dropped;
            let due = s
                .last_drop_log
                .is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY);
            if due {
                tracing::error!(
                    dropped = s.drops_since_log,
                    spool_dir = %self.dir.display(),
                    spool_max_bytes = self.max_bytes,
                    "DECISION RECORDS DROPPED: the decision-log spool is full (or unwritable) \
                     and the database is not keeping up; raise decision_log.spool_max_bytes or \
                     restore the database"
                );
                s.drops_since_log = 0;
                s.last_drop_log = Some(Instant::now());
            }
        }
        metrics.spooled.inc_by(out.spooled);
        metrics.dropped.inc_by(out.dropped);
        metrics
            .spool_bytes
            .set(gauge(s.active_bytes + s.replay_bytes));
        out
    }

    /// fsyncs what was appended since the last call. The fsync runs outside the lock, so a
    /// request spooling a record meanwhile does not wait for the disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let file = {
            let mut s = self.lock();
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            s.file.try_clone()?
        };
        file.sync_data().inspect_err(|_| self.lock().dirty = true)
    }

    /// The file to replay next: the replay file left from an earlier attempt, else the active
    /// file renamed (appends continue in a fresh active file). `None` when nothing is spooled.
    pub(crate) fn take_for_replay(&self) -> io::Result<Option<PathBuf>> {
        let mut s = self.lock();
        if s.replay_bytes > 0 || self.replay_path.exists() {
            return Ok(Some(self.replay_path.clone()));
        }
        if s.active_bytes == 0 {
            return Ok(None);
        }
        s.file.sync_data()?;
        std::fs::rename(&self.active_path, &self.replay_path)?;
        sync_dir(&self.dir)?;
        s.file = open_append(&self.active_path)?;
        s.replay_bytes = s.active_bytes;
        s.active_bytes = 0;
        s.dirty = false;
        Ok(Some(self.replay_path.clone()))
    }

    /// Every line of the replay file is in the database: delete it.
    pub(crate) fn finish_replay(&self, metrics: &DecisionLogMetrics) -> io::Result<()> {
        let mut s = self.lock();
        match std::fs::remove_file(&self.replay_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(&self.dir)?;
        s.replay_bytes = 0;
        metrics.spool_bytes.set(gauge(s.active_bytes));
        Ok(())
    }
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
