//! Throw-away databases for tests and benchmarks: each run creates its own (`spendgate_scratch_<random>`) on
//! the server it is pointed at, so runs never see each other's data and can go in parallel, and drops it
//! afterwards.

use crate::{Result, StoreError};

/// The URL that tests and benchmarks use when `SPENDGATE_TEST_PG` is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// `url` with its database replaced by `db` (URL form `postgres://.../db?...` or `key=value` form).
fn with_database(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={db}");
    };
    let rest = scheme_end + 3;
    let query = url[rest..].find('?').map_or(url.len(), |i| rest + i);
    let path = url[rest..query].find('/').map_or(query, |i| rest + i);
    format!("{}/{db}{}", &url[..path], &url[query..])
}

impl ScratchDatabase {
    /// Creates a fresh database on the server of `admin_url` (a URL whose user may create databases).
    /// A server that cannot be reached is a [`StoreError::Connect`].
    pub async fn create(admin_url: &str) -> Result<ScratchDatabase> {
        let name = format!("spendgate_scratch_{}", uuid::Uuid::now_v7().simple());
        let pool = super::pool::Pool::new(admin_url, 1, std::time::Duration::from_secs(5))?;
        let admin = pool.connect().await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| {
                StoreError::Database(format!(
                    "could not create the scratch database {name} ({e}); the user needs CREATEDB"
                ))
            })?;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// Like [`ScratchDatabase::create`] on the server named by the environment variable `var`, or on
    /// [`DEFAULT_TEST_URL`]. Also returns the URL tried, without its password, for messages.
    pub async fn from_env(var: &str) -> (String, Result<ScratchDatabase>) {
        let admin = std::env::var(var).unwrap_or_else(|_| DEFAULT_TEST_URL.to_string());
        (
            super::redact_url(&admin),
            ScratchDatabase::create(&admin).await,
        )
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database (closing its connections) from a thread of its own, because `Drop` cannot wait on the
    /// runtime that may be running it. Failures only leave a database behind, so they are logged, not raised.
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let pool = super::pool::Pool::new(&admin, 1, std::time::Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                let client = pool.connect().await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            tracing::warn!(database = %self.name, error = %e, "Could not drop a scratch database.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("host=h user=u", "x"),
            "host=h user=u dbname=x"
        );
    }
}
