//! A small connection pool: idle clients in a list, a semaphore bounding how many are in use. Each connection's
//! socket is driven by its own task; a client whose connection died is dropped instead of being handed out. A
//! crate would add more than these few lines do.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::tls::{split_url, MakeRustls};

use crate::{Result, StoreError};

/// A URL fit to show (PostgreSQL's, or any `scheme://user:password@host` such as Redis's): the password (in the
/// user part or a `password=` option) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    // Key-value options (`password=...` in a query string or a `key=value` connection string).
    let lower = out.to_ascii_lowercase();
    if let Some(i) = lower.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
    }
    out
}

pub(super) struct Pool {
    config: Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` ask; `None` for `sslmode=disable`.
    tls: Option<MakeRustls>,
    /// The URL without its password, for messages.
    shown: String,
    idle: Mutex<Vec<Client>>,
    slots: Semaphore,
}

/// A client borrowed from the pool; it goes back when dropped, unless its connection has closed.
pub(super) struct Pooled<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _slot: SemaphorePermit<'a>,
}

impl Pooled<'_> {
    /// Closes the connection instead of returning it to the pool (after an error it may be dead).
    pub fn discard(&mut self) {
        self.client = None;
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Always Some until drop takes it.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

impl Pool {
    pub fn new(url: &str, size: usize, connect_timeout: Duration) -> Result<Pool> {
        let shown = redact_url(url);
        let invalid = |reason: String| StoreError::Connect {
            url: shown.clone(),
            reason,
        };
        let (driver_url, tls) = split_url(url).map_err(&invalid)?;
        let tls = tls.connector().map_err(&invalid)?;
        let mut config: Config = driver_url
            .parse()
            .map_err(|e: tokio_postgres::Error| invalid(format!("the URL is not valid ({e})")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        config.application_name("spendgate");
        Ok(Pool {
            config,
            tls,
            shown,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(size.max(1)),
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A new connection, outside the pool (the writer keeps its own).
    pub async fn connect(&self) -> Result<Client> {
        match &self.tls {
            Some(tls) => self.connect_with(tls.clone()).await,
            None => self.connect_with(NoTls).await,
        }
    }

    /// Connects, and drives the connection's socket on a task of its own.
    async fn connect_with<T>(&self, tls: T) -> Result<Client>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let (client, connection) =
            self.config
                .connect(tls)
                .await
                .map_err(|e| StoreError::Connect {
                    url: self.shown.clone(),
                    reason: super::tls::explain(&super::describe(&e)),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "A PostgreSQL connection ended with an error; the next query reconnects.");
            }
        });
        Ok(client)
    }

    /// A pooled connection, waiting while all are in use.
    pub async fn get(&self) -> Result<Pooled<'_>> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StoreError::WorkerGone)?;
        let idle = loop {
            let next = self.idle.lock().map_err(|_| StoreError::WorkerGone)?.pop();
            match next {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Pooled {
            client: Some(client),
            pool: self,
            _slot: slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/spend"),
            "postgres://app:***@db:5432/spend"
        );
        assert_eq!(
            redact_url("postgres://app@db/spend?password=s3cret&sslmode=disable"),
            "postgres://app@db/spend?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=app password=s3cret dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        let options = super::super::PostgresOptions::new(
            "postgres://app:s3cret@db/spend?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        );
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("app:***@db"),
            "{shown}"
        );
    }
}
