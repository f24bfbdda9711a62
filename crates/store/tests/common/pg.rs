//! What the PostgreSQL test files share.
#![allow(clippy::print_stderr, clippy::panic)]

use spendgate_store::postgres::scratch::ScratchDatabase;
use spendgate_store::StoreError;

/// A fresh database, or `None` (with the reason on stderr) when no server answers.
pub async fn scratch() -> Option<ScratchDatabase> {
    match ScratchDatabase::from_env("SPENDGATE_TEST_PG").await {
        (_, Ok(db)) => Some(db),
        (url, Err(e @ StoreError::Connect { .. })) => {
            eprintln!("skipped: PostgreSQL not reachable at {url} ({e})");
            None
        }
        (url, Err(e)) => panic!("PostgreSQL at {url} answered but refused a test database: {e}"),
    }
}
