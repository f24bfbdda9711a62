//! What the SQL backends share: the query plans (which rollup answers which view), the SQL text of every read,
//! the aggregation of a batch into rollup rows, refusals, the postings of a wallet transfer and the mapping of rows back to
//! records. Each backend only binds parameters and reads cells with its own driver, so SQLite and PostgreSQL
//! answer every query with the same semantics and cannot drift apart.

pub(crate) mod batch;
pub(crate) mod detail;
pub(crate) mod lease;
pub(crate) mod ledger;
pub(crate) mod plan;
pub(crate) mod queries;
pub(crate) mod refusals;
pub(crate) mod rows;

/// The SQL dialect a query is written for. The texts are the same; only parameter placeholders differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A query's text and its parameters. Every parameter of the shared queries is an integer (label ids, buckets,
/// times, limits), which keeps binding trivial for both drivers.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub sql: String,
    pub params: Vec<i64>,
    dialect: Dialect,
}

impl Query {
    pub fn new(dialect: Dialect) -> Query {
        Query {
            sql: String::new(),
            params: Vec::new(),
            dialect,
        }
    }

    /// Adds a parameter and returns its placeholder (`?N` for SQLite, `$N` for PostgreSQL).
    pub fn bind(&mut self, v: i64) -> String {
        self.params.push(v);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }
}
