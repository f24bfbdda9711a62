//! Rows sent with `COPY ... FROM STDIN (FORMAT binary)`: the writer's spend logs, straight into their table, and
//! its rollup rows (and the spend logs of a replayed batch) into staging tables.
//!
//! A batch used to bind one array per column and read them back with `unnest`: for 262,144 spend logs the
//! server spent 3.3-4.1 s of CPU on that statement, against 1.1-1.2 s for the same rows inserted from a table
//! (docs/BENCHMARKS-HISTORY.md, tenth session): each `unnest` of a parameter is a set function that the server
//! materialises before zipping the columns into rows. So a batch's rows now go by binary `COPY`. What `COPY`
//! alone cannot do, `ON CONFLICT` (a replayed event counted once, a rollup row added to) and `RETURNING` (which
//! events were new), is done by copying into temporary tables of this connection (`create_staging`), from which
//! one `INSERT ... SELECT` moves the rows into the real table.
//!
//! The binary format, from PostgreSQL's documentation of `COPY` ("Binary Format"): an 11-byte signature
//! `PGCOPY\n\377\r\n\0`, a 32-bit flags field (0) and a 32-bit header-extension length (0); then per row a
//! 16-bit field count and, per field, a 32-bit byte length (-1 for NULL) followed by the value in the type's
//! binary send format (`int8` 8 bytes big-endian, `bool` one byte, `uuid` its 16 bytes, `text` its UTF-8 bytes);
//! then a 16-bit -1. Every integer is in network byte order.
//!
//! **Order.** The rows of a staging table are read back by a sequential scan in the order `COPY` wrote them: the
//! table is emptied at every commit (`ON COMMIT DELETE ROWS`), written by one `COPY` per transaction, and a
//! temporary table is never scanned in parallel nor by a synchronized scan (those are for shared buffers;
//! temporary tables live in the backend's own). The write path relies on this to take shared rows in key order
//! (`write.rs`, "No deadlocks"), and the two-writer test checks it.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::{CopyInSink, GenericClient, Transaction};

/// The driver's own result: `CopyIn` keeps its errors' SQLSTATE.
type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;
use uuid::Uuid;

use crate::sql::batch::{LOG_INT_COLUMNS, MEASURE_COUNT, ROLLUP_DIMS, ROLLUP_MEASURES};
use crate::sql::plan::{NARROW_TABLES, PAIR_KEY, PAIR_TABLES, ROLLUP_TABLES};
use crate::Result;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// How many bytes of rows are encoded before they are handed to the connection: the server reads one chunk while
/// the next is encoded.
const CHUNK_BYTES: usize = 256 * 1024;

/// Rows in `COPY`'s binary format, encoded into a buffer that `CopyIn` sends chunk by chunk.
#[derive(Debug)]
pub(super) struct CopyRows {
    buf: BytesMut,
    fields: i16,
}

impl CopyRows {
    fn new(fields: usize) -> CopyRows {
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 4096);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0);
        buf.put_i32(0);
        CopyRows {
            buf,
            fields: i16::try_from(fields).unwrap_or(i16::MAX),
        }
    }

    /// Starts a row; its fields follow, exactly as many as the table has columns.
    pub fn row(&mut self) -> &mut Self {
        self.buf.put_i16(self.fields);
        self
    }

    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
        self
    }

    pub fn ints(&mut self, vs: &[i64]) -> &mut Self {
        for v in vs {
            self.int8(*v);
        }
        self
    }

    pub fn opt_int8(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int8(v),
            None => {
                self.buf.put_i32(-1);
                self
            }
        }
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_i32(1);
        self.buf.put_u8(u8::from(v));
        self
    }

    pub fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.buf.put_i32(16);
        self.buf.put_slice(v.as_bytes());
        self
    }

    /// A `text` value. A length beyond what a field can say (2 GiB) is sent as the largest one: the server's
    /// limit on a value is 1 GB, so it refuses the row either way.
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.buf.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
        self.buf.put_slice(v.as_bytes());
        self
    }

    /// The bytes encoded so far, leaving the buffer empty.
    fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    fn trailer(&mut self) {
        self.buf.put_i16(-1);
    }
}

/// One `COPY <table> FROM STDIN (FORMAT binary)` under way in a transaction: rows are encoded with `rows()`,
/// `row_done` hands each full chunk to the connection, `finish` ends the copy. Errors are the driver's, so that
/// a caller can tell a unique violation (which the server reports by the time `finish` returns) from the rest.
pub(super) struct CopyIn {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    rows: CopyRows,
    count: u64,
}

impl CopyIn {
    /// Starts copying rows of `fields` columns into `target`: a table whose columns are, in order, the ones the
    /// rows give, or a table and the list of those columns.
    pub async fn start(tx: &Transaction<'_>, target: &str, fields: usize) -> PgResult<CopyIn> {
        let sink = tx
            .copy_in::<_, Bytes>(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
            .await?;
        Ok(CopyIn {
            sink: Box::pin(sink),
            rows: CopyRows::new(fields),
            count: 0,
        })
    }

    /// The encoder of the next row.
    pub fn rows(&mut self) -> &mut CopyRows {
        &mut self.rows
    }

    /// Counts a row just encoded, and sends what is buffered once it fills a chunk.
    pub async fn row_done(&mut self) -> PgResult<()> {
        self.count += 1;
        if self.rows.buf.len() >= CHUNK_BYTES {
            let chunk = self.rows.take();
            self.sink.as_mut().feed(chunk).await?;
        }
        Ok(())
    }

    /// Sends the rest and ends the copy; returns the rows copied.
    pub async fn finish(mut self) -> PgResult<u64> {
        self.rows.trailer();
        let last = self.rows.take();
        self.sink.as_mut().send(last).await?;
        let copied = self.sink.as_mut().finish().await?;
        debug_assert_eq!(copied, self.count);
        Ok(copied)
    }
}

/// The staging table of a table the writer fills: `<table>_in`.
pub(super) fn staging(table: &str) -> String {
    format!("{table}_in")
}

/// The spend-log columns in the order the staging table has them and `write.rs` sends them.
pub(super) fn spend_log_columns() -> String {
    format!(
        "event_id, endpoint, detail, stream, fingerprint, {}",
        LOG_INT_COLUMNS.join(", ")
    )
}

/// Creates this connection's staging tables, emptied at every commit. Run once per connection, before its first
/// batch; `IF NOT EXISTS` because a connection keeps them until it closes.
pub(super) async fn create_staging(client: &impl GenericClient) -> Result<()> {
    let ints = |cols: &str| {
        cols.split(',')
            .map(|c| format!("{} BIGINT NOT NULL", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sql = format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {} (event_id UUID NOT NULL, endpoint TEXT NOT NULL, detail TEXT NOT NULL,
           stream BOOLEAN NOT NULL, fingerprint BIGINT, {}) ON COMMIT DELETE ROWS;",
        staging("spend_logs"),
        ints(&LOG_INT_COLUMNS.join(", "))
    );
    let shapes = ROLLUP_TABLES
        .iter()
        .map(|t| (*t, ROLLUP_DIMS))
        .chain(NARROW_TABLES.iter().map(|t| (*t, "dim, bucket, value")))
        .chain(PAIR_TABLES.iter().map(|t| (*t, PAIR_KEY)));
    for (table, key) in shapes {
        debug_assert_eq!(ROLLUP_MEASURES.split(',').count(), MEASURE_COUNT);
        sql.push_str(&format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} ({}, {}) ON COMMIT DELETE ROWS;",
            staging(table),
            ints(key),
            ints(ROLLUP_MEASURES)
        ));
    }
    client.batch_execute(&sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CopyRows;

    #[test]
    fn rows_are_encoded_as_postgresql_documents_the_binary_format() {
        let mut rows = CopyRows::new(3);
        rows.row().int8(-2).opt_int8(None).text("ab");
        rows.trailer();
        let bytes = rows.take();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0, 3]);
        expected.extend([0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254]);
        expected.extend([255, 255, 255, 255]);
        expected.extend([0, 0, 0, 2, b'a', b'b']);
        expected.extend([255, 255]);
        assert_eq!(&bytes[..], &expected[..]);
    }
}
