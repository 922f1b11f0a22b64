//! `portcullis audit verify` and `export`: recompute the chain, check every checkpoint, and say
//! exactly what is wrong.

use super::chain::{verify_signature, Checkpoint, PublicKey, Record, GENESIS};
use super::store::{AuditStore, StoreError};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

const PAGE: i64 = 5000;

/// What kind of tampering a problem shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's content no longer matches its hash.
    Changed,
    /// One or more records are missing from the chain.
    Deleted,
    /// Records that are not part of the chain were added.
    Inserted,
    /// Records are out of chain order.
    Reordered,
    /// Records after a signed checkpoint are gone.
    Truncated,
    /// A checkpoint does not match the records it covers (they were rewritten).
    CheckpointMismatch,
    /// A checkpoint signature does not verify or its key is not trusted.
    BadSignature,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// The storage position it concerns, when there is one.
    pub seq: Option<i64>,
    /// Human explanation.
    pub message: String,
}

/// The evidence `verify --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No problem found.
    pub ok: bool,
    /// Records read.
    pub records: i64,
    /// Hash of the last record.
    pub head_hash: String,
    /// Checkpoints found.
    pub checkpoints: usize,
    /// Checkpoints whose signature verified and that match the chain.
    pub checkpoints_verified: usize,
    /// The newest checkpoint (keep it: a later verify can be asked to find it again).
    pub last_checkpoint: Option<Checkpoint>,
    /// `pinned` (given with --keys) or `store` (read from the store itself).
    pub keys_source: String,
    /// Keys used.
    pub keys: Vec<PublicKey>,
    /// Findings, in chain order.
    pub problems: Vec<Problem>,
}

/// Verifies the whole store. `pinned` keys replace the store's own list; `expect` is a
/// checkpoint from an earlier verification that must still be present (detects a truncation
/// that also removed later checkpoints).
pub async fn verify(
    store: &dyn AuditStore,
    pinned: Option<Vec<PublicKey>>,
    expect: Option<&Checkpoint>,
) -> Result<Report, StoreError> {
    let checkpoints = store.checkpoints().await?;
    let (keys, keys_source) = match pinned {
        Some(k) => (k, "pinned"),
        None => (store.keys().await?, "store"),
    };
    let wanted: HashSet<i64> = checkpoints
        .iter()
        .map(|c| c.count)
        .chain(expect.map(|c| c.count))
        .collect();
    let mut hash_at: HashMap<i64, String> = HashMap::new();
    let mut problems = Vec::new();
    let mut reordered: HashSet<i64> = HashSet::new();
    let mut prev_hash = GENESIS.to_string();
    let mut prev_seq = 0i64;
    let mut pos = 0i64;
    let mut after = 0i64;
    loop {
        let page: Vec<Record> = store.records(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            pos += 1;
            let gap = r.seq > prev_seq + 1;
            if gap {
                problems.push(Problem {
                    kind: ProblemKind::Deleted,
                    seq: Some(r.seq),
                    message: format!(
                        "records at positions {}..{} are missing",
                        prev_seq + 1,
                        r.seq - 1
                    ),
                });
            }
            if r.computed_hash() != r.hash {
                problems.push(Problem {
                    kind: ProblemKind::Changed,
                    seq: Some(r.seq),
                    message: format!(
                        "record {} ({}) was changed: its content does not match its hash",
                        r.seq, r.kind
                    ),
                });
            } else if r.prev_hash != prev_hash {
                let target = if r.prev_hash == GENESIS {
                    Some(0)
                } else {
                    store.seq_of_hash(&r.prev_hash).await?
                };
                let p = match target {
                    None if gap => None,
                    None => Some(Problem {
                        kind: ProblemKind::Deleted,
                        seq: Some(r.seq),
                        message: format!(
                            "the record that preceded record {} is missing (deleted, or rewritten under a new hash)",
                            r.seq
                        ),
                    }),
                    Some(j) if j >= r.seq || j > prev_seq => {
                        reordered.insert(r.seq);
                        Some(Problem {
                            kind: ProblemKind::Reordered,
                            seq: Some(r.seq),
                            message: format!(
                                "record {} belongs after record {j}: records were reordered",
                                r.seq
                            ),
                        })
                    }
                    Some(j) if (j + 1..=prev_seq).any(|s| reordered.contains(&s)) => {
                        reordered.insert(r.seq);
                        Some(Problem {
                            kind: ProblemKind::Reordered,
                            seq: Some(r.seq),
                            message: format!(
                                "record {} belongs after record {j}: records were reordered",
                                r.seq
                            ),
                        })
                    }
                    Some(j) => Some(Problem {
                        kind: ProblemKind::Inserted,
                        seq: Some(j + 1),
                        message: format!(
                            "records {}..{} are not part of the chain: they were inserted between records {j} and {}",
                            j + 1,
                            prev_seq,
                            r.seq
                        ),
                    }),
                };
                problems.extend(p);
            }
            if wanted.contains(&pos) {
                hash_at.insert(pos, r.hash.clone());
            }
            prev_hash = r.hash.clone();
            prev_seq = r.seq;
        }
    }
    let mut verified = 0;
    let mut last_count = 0;
    for cp in &checkpoints {
        let mut good = true;
        if let Err(e) = verify_signature(cp, &keys) {
            good = false;
            problems.push(Problem {
                kind: ProblemKind::BadSignature,
                seq: Some(cp.count),
                message: format!("checkpoint of {} (count {}): {e}", cp.time, cp.count),
            });
        }
        if cp.count < last_count {
            good = false;
            problems.push(Problem {
                kind: ProblemKind::Reordered,
                seq: Some(cp.count),
                message: format!(
                    "checkpoint of {} covers {} records, fewer than the one before it ({last_count})",
                    cp.time, cp.count
                ),
            });
        }
        last_count = last_count.max(cp.count);
        if cp.count > pos {
            good = false;
            problems.push(Problem {
                kind: ProblemKind::Truncated,
                seq: Some(pos + 1),
                message: format!(
                    "the log was truncated: the checkpoint of {} covers {} records but only {pos} remain",
                    cp.time, cp.count
                ),
            });
        } else if cp.count > 0 && hash_at.get(&cp.count) != Some(&cp.head_hash) {
            good = false;
            problems.push(Problem {
                kind: ProblemKind::CheckpointMismatch,
                seq: Some(cp.count),
                message: format!(
                    "the checkpoint of {} does not match record {}: records up to it were rewritten",
                    cp.time, cp.count
                ),
            });
        }
        if good {
            verified += 1;
        }
    }
    if let Some(e) = expect {
        if !checkpoints.contains(e) {
            problems.push(Problem {
                kind: ProblemKind::Truncated,
                seq: Some(e.count),
                message: format!(
                    "the expected checkpoint of {} (count {}) is gone from the store",
                    e.time, e.count
                ),
            });
        }
        if e.count > pos {
            problems.push(Problem {
                kind: ProblemKind::Truncated,
                seq: Some(pos + 1),
                message: format!(
                    "the log was truncated: the expected checkpoint covers {} records but only {pos} remain",
                    e.count
                ),
            });
        } else if hash_at.get(&e.count) != Some(&e.head_hash) {
            problems.push(Problem {
                kind: ProblemKind::CheckpointMismatch,
                seq: Some(e.count),
                message: format!(
                    "the expected checkpoint does not match record {}: records up to it were rewritten",
                    e.count
                ),
            });
        }
    }
    problems.sort_by_key(|p| p.seq.unwrap_or(i64::MAX));
    Ok(Report {
        ok: problems.is_empty(),
        records: pos,
        head_hash: prev_hash,
        checkpoints: checkpoints.len(),
        checkpoints_verified: verified,
        last_checkpoint: checkpoints.last().cloned(),
        keys_source: keys_source.into(),
        keys,
        problems,
    })
}

/// One end of an export range: a record position or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Storage position.
    Seq(i64),
    /// Time (inclusive).
    Time(std::time::SystemTime),
}

impl std::str::FromStr for Bound {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.parse::<i64>() {
            return Ok(Bound::Seq(n));
        }
        humantime::parse_rfc3339_weak(s)
            .map(Bound::Time)
            .map_err(|e| format!("{s:?} is neither a record number nor an RFC 3339 time ({e})"))
    }
}

fn within(r: &Record, from: Option<&Bound>, to: Option<&Bound>) -> (bool, bool) {
    let t = humantime::parse_rfc3339_weak(&r.time).ok();
    let after_from = match from {
        None => true,
        Some(Bound::Seq(n)) => r.seq >= *n,
        Some(Bound::Time(f)) => t.is_some_and(|t| t >= *f),
    };
    let before_to = match to {
        None => true,
        Some(Bound::Seq(n)) => r.seq <= *n,
        Some(Bound::Time(x)) => t.is_some_and(|t| t <= *x),
    };
    (after_from, before_to)
}

/// An export: records in range and the checkpoints that cover them.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    /// `portcullis-audit-export/v1`.
    pub format: String,
    /// Records, in order; each carries `prev_hash` and `hash`.
    pub records: Vec<Record>,
    /// Checkpoints whose count falls in the range, plus the first one after it.
    pub checkpoints: Vec<Checkpoint>,
    /// Keys that signed them.
    pub keys: Vec<PublicKey>,
}

/// Collects records between `from` and `to` (inclusive) and the covering checkpoints.
pub async fn export(
    store: &dyn AuditStore,
    from: Option<&Bound>,
    to: Option<&Bound>,
) -> Result<Export, StoreError> {
    let mut records = Vec::new();
    let mut after = 0;
    'pages: loop {
        let page = store.records(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            let (a, b) = within(&r, from, to);
            if !b {
                break 'pages;
            }
            if a {
                records.push(r);
            }
        }
    }
    let all = store.checkpoints().await?;
    let mut checkpoints = Vec::new();
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        let (lo, hi) = (first.seq, last.seq);
        checkpoints.extend(
            all.iter()
                .filter(|c| c.count >= lo && c.count <= hi)
                .cloned(),
        );
        if let Some(next) = all.iter().find(|c| c.count > hi) {
            checkpoints.push(next.clone());
        } else if !checkpoints.iter().any(|c| c.count == hi) {
            if let Some(c) = all.iter().rev().find(|c| c.count >= hi) {
                checkpoints.push(c.clone());
            }
        }
    }
    let used: HashSet<&str> = checkpoints.iter().map(|c| c.key_id.as_str()).collect();
    let keys = store
        .keys()
        .await?
        .into_iter()
        .filter(|k| used.contains(k.key_id.as_str()))
        .collect();
    Ok(Export {
        format: "portcullis-audit-export/v1".into(),
        records,
        checkpoints,
        keys,
    })
}
