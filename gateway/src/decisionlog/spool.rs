//! The on-disk spool of one sink: records that could not be delivered yet, in order.
//!
//! Layout in the sink's directory: segment files `00000000000000000001.seg`, … holding NDJSON
//! lines, and `cursor` (`SEGMENT OFFSET`), the first byte not yet delivered. Appends go to the
//! last segment and are synced before they count as spooled; delivery moves the cursor (written
//! atomically) and deletes segments it has passed. A line cut short by a crash is trimmed on open.

use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Spool I/O failed.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// Any file operation; the spool keeps what it had synced before.
    #[error("spool {dir}: {source}")]
    Io {
        /// Spool directory.
        dir: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Where the next undelivered byte is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in it.
    pub offset: u64,
}

/// A batch read from the spool, to be committed once delivered.
#[derive(Debug)]
pub struct Batch {
    /// Records in order.
    pub records: Vec<Bytes>,
    /// Cursor after these records.
    pub end: Position,
}

/// One sink's spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    segments: Vec<(u64, u64)>,
    cursor: Position,
    segment_max: u64,
}

fn seg_name(n: u64) -> String {
    format!("{n:020}.seg")
}

impl Spool {
    /// Opens (creating) the spool in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            dir: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".seg"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            segments.push((n, entry.metadata().map_err(io)?.len()));
        }
        segments.sort_unstable();
        let cursor = fs::read_to_string(dir.join("cursor")).ok().and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some(Position {
                segment: it.next()??,
                offset: it.next()??,
            })
        });
        let mut spool = Self {
            dir: dir.to_path_buf(),
            segments,
            cursor: Position {
                segment: 0,
                offset: 0,
            },
            segment_max: 8 << 20,
        };
        spool.trim_partial_tail().map_err(io)?;
        spool.cursor = match (cursor, spool.segments.first()) {
            (Some(c), Some(&(first, _))) if c.segment >= first => c,
            (_, Some(&(first, _))) => Position {
                segment: first,
                offset: 0,
            },
            (_, None) => Position {
                segment: 1,
                offset: 0,
            },
        };
        Ok(spool)
    }

    /// Sets the segment rollover size (tests use small ones).
    pub fn with_segment_max(mut self, bytes: u64) -> Self {
        self.segment_max = bytes.max(1);
        self
    }

    fn trim_partial_tail(&mut self) -> std::io::Result<()> {
        let Some(&(n, len)) = self.segments.last() else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        let path = self.dir.join(seg_name(n));
        let data = fs::read(&path)?;
        let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
        if keep != len {
            tracing::warn!(spool = %self.dir.display(), bytes = len - keep, "trimming a record cut short by a crash");
            OpenOptions::new().write(true).open(&path)?.set_len(keep)?;
            if let Some(last) = self.segments.last_mut() {
                last.1 = keep;
            }
        }
        Ok(())
    }

    fn err(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// Bytes not yet delivered.
    pub fn pending_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|&(n, len)| {
                if n < self.cursor.segment {
                    0
                } else if n == self.cursor.segment {
                    len.saturating_sub(self.cursor.offset)
                } else {
                    len
                }
            })
            .sum()
    }

    /// Nothing left to deliver.
    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// Appends records (one line each) and syncs them to disk.
    pub fn append(&mut self, records: &[Bytes]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let need_new = match self.segments.last() {
            None => true,
            Some(&(_, len)) => len >= self.segment_max,
        };
        if need_new {
            let next = self
                .segments
                .last()
                .map_or(self.cursor.segment, |&(n, _)| n + 1);
            self.segments.push((next, 0));
        }
        let Some(&(n, _)) = self.segments.last() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(seg_name(n)))
            .map_err(|e| self.err(e))?;
        f.write_all(&buf).map_err(|e| self.err(e))?;
        f.sync_data().map_err(|e| self.err(e))?;
        if let Some(last) = self.segments.last_mut() {
            last.1 += buf.len() as u64;
        }
        Ok(())
    }

    /// Reads up to `max` records from the cursor without consuming them.
    pub fn read(&mut self, max: usize) -> Result<Batch, SpoolError> {
        // Skip segments that are fully delivered.
        loop {
            let head = self
                .segments
                .iter()
                .find(|&&(n, _)| n == self.cursor.segment);
            match head {
                Some(&(_, len)) if self.cursor.offset >= len => {
                    let later = self.segments.iter().any(|&(n, _)| n > self.cursor.segment);
                    if !later {
                        break;
                    }
                    let next = Position {
                        segment: self.cursor.segment + 1,
                        offset: 0,
                    };
                    self.commit(next)?;
                }
                None => {
                    let Some(&(n, _)) = self
                        .segments
                        .iter()
                        .find(|&&(n, _)| n > self.cursor.segment)
                    else {
                        break;
                    };
                    self.commit(Position {
                        segment: n,
                        offset: 0,
                    })?;
                }
                Some(_) => break,
            }
        }
        let mut records = Vec::new();
        let mut end = self.cursor;
        if let Some(&(n, len)) = self
            .segments
            .iter()
            .find(|&&(n, _)| n == self.cursor.segment)
        {
            if self.cursor.offset < len {
                let mut f = File::open(self.dir.join(seg_name(n))).map_err(|e| self.err(e))?;
                f.seek(SeekFrom::Start(self.cursor.offset))
                    .map_err(|e| self.err(e))?;
                let mut data = Vec::with_capacity((len - self.cursor.offset) as usize);
                f.take(len - self.cursor.offset)
                    .read_to_end(&mut data)
                    .map_err(|e| self.err(e))?;
                let mut at = 0usize;
                while records.len() < max {
                    let Some(nl) = data[at..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    records.push(Bytes::copy_from_slice(&data[at..at + nl]));
                    at += nl + 1;
                }
                end.offset += at as u64;
            }
        }
        Ok(Batch { records, end })
    }

    /// Marks everything before `pos` delivered; deletes segments left behind.
    pub fn commit(&mut self, pos: Position) -> Result<(), SpoolError> {
        let tmp = self.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", pos.segment, pos.offset)).map_err(|e| self.err(e))?;
        fs::rename(&tmp, self.dir.join("cursor")).map_err(|e| self.err(e))?;
        self.cursor = pos;
        let dir = self.dir.clone();
        self.segments.retain(|&(n, _)| {
            if n < pos.segment {
                let _ = fs::remove_file(dir.join(seg_name(n)));
                false
            } else {
                true
            }
        });
        // Once everything is delivered, start the next append in a fresh segment.
        if self.is_empty() {
            if let Some(&(n, len)) = self.segments.last() {
                if len > 0 && pos.segment == n && pos.offset >= len {
                    let _ = fs::remove_file(dir.join(seg_name(n)));
                    self.segments.clear();
                    self.cursor = Position {
                        segment: n + 1,
                        offset: 0,
                    };
                    let _ = fs::write(&tmp, format!("{} 0\n", n + 1))
                        .and_then(|()| fs::rename(&tmp, dir.join("cursor")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(range: std::ops::Range<u32>) -> Vec<Bytes> {
        range
            .map(|i| Bytes::from(format!("{{\"n\":{i}}}")))
            .collect()
    }

    fn drain(s: &mut Spool) -> Vec<Bytes> {
        let mut out = Vec::new();
        loop {
            let b = s.read(7).unwrap();
            if b.records.is_empty() {
                break;
            }
            out.extend(b.records);
            s.commit(b.end).unwrap();
        }
        out
    }

    #[test]
    fn replays_in_order_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap().with_segment_max(100);
        s.append(&recs(0..20)).unwrap();
        s.append(&recs(20..50)).unwrap();
        let b = s.read(5).unwrap();
        assert_eq!(b.records, recs(0..5));
        s.commit(b.end).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path()).unwrap().with_segment_max(100);
        assert!(!s.is_empty());
        s.append(&recs(50..60)).unwrap();
        assert_eq!(drain(&mut s), recs(5..60));
        assert!(s.is_empty());
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn uncommitted_reads_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&recs(0..3)).unwrap();
        assert_eq!(s.read(10).unwrap().records, recs(0..3));
        assert_eq!(s.read(10).unwrap().records, recs(0..3));
        let mut s = Spool::open(dir.path()).unwrap();
        assert_eq!(drain(&mut s), recs(0..3));
    }

    #[test]
    fn a_partial_line_from_a_crash_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&recs(0..2)).unwrap();
        drop(s);
        let seg = dir.path().join(seg_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"n\":2").unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&recs(3..4)).unwrap();
        let mut want = recs(0..2);
        want.extend(recs(3..4));
        assert_eq!(drain(&mut s), want);
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap().with_segment_max(50);
        s.append(&recs(0..40)).unwrap();
        for i in 40..60 {
            s.append(&recs(i..i + 1)).unwrap();
        }
        let before = fs::read_dir(dir.path()).unwrap().count();
        assert!(before > 3);
        assert_eq!(drain(&mut s).len(), 60);
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count();
        assert_eq!(segs, 0);
    }
}
