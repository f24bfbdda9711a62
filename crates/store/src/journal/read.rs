//! Reading the journal back: the segments an earlier process left, in either format.
//!
//! Segments named `segment-N.rec` hold binary records (`codec`); `segment-N.jsonl`, written before 2026-12-08,
//! hold one JSON-encoded record per line. Both are read, in the order of their numbers, so that a journal left by
//! an older build is replayed by a newer one: the upgrade path.

use std::path::{Path, PathBuf};

use spendgate_core::{RefusalEvent, SpendEvent};

use super::codec;
use crate::writer::Record;
use crate::StoreError;

/// The two formats a segment can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Length-prefixed binary records with checksums (`codec`): what this build writes.
    Binary,
    /// One JSON record per line: what builds before 2026-12-08 wrote. Read, never written.
    JsonLines,
}

impl Format {
    fn suffix(self) -> &'static str {
        match self {
            Format::Binary => ".rec",
            Format::JsonLines => ".jsonl",
        }
    }
}

/// The path of segment `n` in `format`.
pub(crate) fn segment_path(dir: &Path, n: u64, format: Format) -> PathBuf {
    dir.join(format!("segment-{n:012}{}", format.suffix()))
}

/// The segments in `dir`, in the order they were written.
pub(crate) fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf, Format)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("segment-") else {
            continue;
        };
        for format in [Format::Binary, Format::JsonLines] {
            if let Some(n) = rest
                .strip_suffix(format.suffix())
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push((n, path.clone(), format));
            }
        }
    }
    out.sort_by_key(|(n, _, _)| *n);
    Ok(out)
}

/// What an earlier process left in the journal.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub events: Vec<SpendEvent>,
    pub refusals: Vec<RefusalEvent>,
    pub files: Vec<PathBuf>,
}

impl Leftovers {
    fn push(&mut self, record: Record) {
        match record {
            Record::Spend(e) => self.events.push(e),
            Record::Refusal(r) => self.refusals.push(r),
        }
    }
}

/// Reads every spend event left in the journal by an earlier process.
pub fn read_leftovers(dir: &Path) -> Result<(Vec<SpendEvent>, Vec<PathBuf>), StoreError> {
    let left = read_records(dir)?;
    Ok((left.events, left.files))
}

/// Reads every spend event and refusal left in the journal by an earlier process.
pub fn read_records(dir: &Path) -> Result<Leftovers, StoreError> {
    let io = |e: std::io::Error| StoreError::Open {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut left = Leftovers::default();
    for (_, path, format) in segments(dir).map_err(io)? {
        let data = std::fs::read(&path).map_err(io)?;
        match format {
            Format::Binary => read_binary(&data, &path, &mut left),
            Format::JsonLines => read_json_lines(&data, &path, &mut left),
        }
        left.files.push(path);
    }
    Ok(left)
}

/// The binary records of one segment. Only a segment's end can be torn (a crash mid-write, before its request
/// was answered; or a failed write, after which the segment is closed, `Journal::flush`); bytes that do not
/// check anywhere else are damage. Either way the reader skips to the next position where a whole record
/// checks, and logs what it skipped.
fn read_binary(data: &[u8], path: &Path, left: &mut Leftovers) {
    let mut pos = 0;
    while pos < data.len() {
        let Some(len) = codec::frame_at(&data[pos..]) else {
            // Only a frame whose payload starts with this build's version is looked for: a damaged run of bytes
            // is then rarely taken for a length, and a checksum is rarely computed.
            let next = (pos + 1..data.len()).find(|&p| {
                data.get(p + codec::HEADER_BYTES) == Some(&codec::VERSION)
                    && codec::frame_at(&data[p..]).is_some()
            });
            let skipped = next.unwrap_or(data.len()) - pos;
            if next.is_some() {
                tracing::error!(file = %path.display(), offset = pos, bytes = skipped,
                    "Skipped damaged bytes in the journal: a record there may be lost.");
            } else {
                tracing::warn!(file = %path.display(), offset = pos, bytes = skipped,
                    "Skipped a torn record at the end of a journal segment (its request was never answered).");
            }
            pos += skipped;
            continue;
        };
        let payload = &data[pos + codec::HEADER_BYTES..pos + codec::HEADER_BYTES + len];
        match codec::decode(payload) {
            Ok(record) => left.push(record),
            // The checksum held, so the record is whole: it was written by a build that knows more than this one.
            Err(e) => tracing::error!(file = %path.display(), offset = pos, error = %e,
                "Skipped a journal record this build cannot read."),
        }
        pos += codec::HEADER_BYTES + len;
    }
}

/// A refusal's line in the JSON format starts so; a spend event's always starts with `{"id":`.
const REFUSAL_PREFIX: &[u8] = b"{\"refusal\":";

#[derive(serde::Deserialize)]
struct RefusalLine {
    refusal: RefusalEvent,
}

/// The lines of one segment in the JSON format (written before 2026-12-08).
fn read_json_lines(data: &[u8], path: &Path, left: &mut Leftovers) {
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let record = if line.starts_with(REFUSAL_PREFIX) {
            serde_json::from_slice::<RefusalLine>(line).map(|l| Record::Refusal(l.refusal))
        } else {
            serde_json::from_slice::<SpendEvent>(line).map(Record::Spend)
        };
        match record {
            Ok(r) => left.push(r),
            // Only the last line of a segment can be torn, as with binary records.
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "Skipped a torn journal line.")
            }
        }
    }
}
