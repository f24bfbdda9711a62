//! TLS to PostgreSQL, against a throw-away cluster this test starts itself: `initdb`, then `postgres` with
//! `ssl=on` and the certificate of `tests/fixtures/tls` (for `localhost` and `127.0.0.1`, not `127.0.0.2`), on a
//! free port, listening on 127.0.0.1 and 127.0.0.2. Its `pg_hba.conf` accepts TCP connections over TLS only and
//! with a password, so every connection that succeeds was encrypted and authenticated. Run as root, the server
//! runs as the `postgres` user (`runuser`), which PostgreSQL insists on. Skipped, with the reason on stderr, when
//! no `initdb` is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{event, window};
use spendgate_core::time::{now_ms, HOUR_MS};
use spendgate_store::postgres::PostgresOptions;
use spendgate_store::{PostgresStore, Store, StoreError};

const PASSWORD: &str = "tls-test-s3cret";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tls")
        .join(name)
}

/// A running cluster, stopped (and its directory removed) when dropped.
struct Cluster {
    server: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The directory holding `initdb` and `postgres`: next to an `initdb` on the PATH, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them there, off the PATH).
fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|real| real.parent().map(Path::to_path_buf))
            .find(|d| has_both(d))
    });
    on_path.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| has_both(d))
            .collect();
        dirs.sort_by_key(|d| {
            let version = d.parent().and_then(Path::file_name);
            version.and_then(|v| v.to_str()?.split('.').next()?.parse::<u32>().ok())
        });
        dirs.pop()
    })
}

/// The uid and gid of the `postgres` user, when this process is root (PostgreSQL refuses to run as root).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // The owner of /proc/self is this process's effective user.
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        return Ok(None);
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(u), Some(g)) => Ok(Some((u, g))),
        _ => Err("running as root, and there is no postgres user to run the server as".into()),
    }
}

/// Initialises and starts the cluster, or says why it cannot be (the test is then skipped).
fn start() -> Result<Cluster, String> {
    let bin = bin_dir().ok_or("no initdb on the PATH or in /usr/lib/postgresql/*/bin")?;
    let user = server_user()?;
    let command = |program: &str| match user {
        Some(_) => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        }
        None => Command::new(bin.join(program)),
    };
    let dir = tempfile::Builder::new()
        .prefix("spendgate-pgtls")
        .tempdir()
        .unwrap();
    let own = |p: &Path| {
        if let Some((uid, gid)) = user {
            chown(p, Some(uid), Some(gid)).unwrap();
        }
    };
    own(dir.path());
    let file = |name: &str, text: &[u8], mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        own(&p);
        p
    };
    let pw = file("pw", PASSWORD.as_bytes(), 0o600);
    let cert = file(
        "server.crt",
        &std::fs::read(fixture("server.crt")).unwrap(),
        0o644,
    );
    let key = file(
        "server.key",
        &std::fs::read(fixture("server.key")).unwrap(),
        0o600,
    );
    let data = dir.path().join("data");
    let init = command("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pw.display()))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    // TCP only over TLS (`hostssl`) and with the password; nothing else matches, so a plain connection is
    // refused.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.2/32 scram-sha-256\n",
    )
    .unwrap();
    // A port free now; PostgreSQL cannot be asked to pick one itself.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let server = command("postgres")
        .arg("-D")
        .arg(&data)
        .args(["-c", &format!("port={port}")])
        .args(["-c", "listen_addresses=127.0.0.1,127.0.0.2"])
        .args([
            "-c",
            "ssl=on",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=20",
        ])
        .args(["-c", &format!("ssl_cert_file={}", cert.display())])
        .args(["-c", &format!("ssl_key_file={}", key.display())])
        .args(["-k", &dir.path().display().to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Ok(Cluster { server, dir, port })
}

impl Cluster {
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{params}",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the server accepts a connection (it takes a moment to start), and returns that store.
    async fn ready(&self) -> PostgresStore {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match connect(&self.url("127.0.0.1", "sslmode=require")).await {
                Ok(store) => return store,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the cluster never answered: {e}\n{}", self.log()),
            }
        }
    }
}

async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(PostgresOptions {
        connect_timeout: Duration::from_secs(5),
        ..PostgresOptions::new(url)
    })
    .await
}

/// The error connecting with `url`, which must not show the password.
async fn refused(url: &str) -> String {
    let e = connect(url).await.map(|_| ()).unwrap_err().to_string();
    assert!(!e.contains(PASSWORD), "the password shows: {e}");
    e
}

#[tokio::test]
async fn sslmodes_connect_check_and_refuse_as_libpq_does() {
    let cluster = match start() {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let store = cluster.ready().await;
    let ca = fixture("ca.crt").display().to_string();
    let other = fixture("other-ca.crt").display().to_string();

    // verify-full with the CA that signed the certificate, by address and by name: connected, and the store
    // works over it.
    for host in ["127.0.0.1", "localhost"] {
        let url = cluster.url(host, &format!("sslmode=verify-full&sslrootcert={ca}"));
        let verified = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let now = now_ms();
        let batch = Arc::new(vec![event(now, Some("t"), "u", "m", 3, 4, 1_234)]);
        assert_eq!(common::write(&verified, &batch).await.inserted, 1);
        let totals = verified
            .summary(&window(now - HOUR_MS, now + HOUR_MS))
            .await
            .unwrap();
        assert!(totals.requests >= 1);
    }
    drop(store);

    // SCRAM bound to the TLS channel (SCRAM-SHA-256-PLUS with the certificate's hash): a client that could not
    // bind would be refused under channel_binding=require.
    connect(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
    ))
    .await
    .unwrap();

    // A CA that did not sign it: refused, saying what to check.
    let e = refused(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await;
    assert!(e.contains("invalid peer certificate"), "{e}");
    assert!(e.contains("check that sslrootcert names the CA"), "{e}");

    // The right CA, but a host the certificate does not name: verify-full refuses, verify-ca (chain only)
    // connects.
    let e = refused(&cluster.url(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(e.contains("not valid for name"), "{e}");
    assert!(e.contains("connect to a name it lists"), "{e}");
    connect(&cluster.url("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={ca}")))
        .await
        .unwrap();
    let e = refused(&cluster.url(
        "127.0.0.2",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ))
    .await;
    assert!(e.contains("invalid peer certificate"), "{e}");

    // require encrypts without checking the certificate (any host), unless a CA file is named: then, as in
    // libpq, the chain is checked as by verify-ca.
    connect(&cluster.url("127.0.0.2", "sslmode=require"))
        .await
        .unwrap();
    let e =
        refused(&cluster.url("127.0.0.1", &format!("sslmode=require&sslrootcert={other}"))).await;
    assert!(e.contains("invalid peer certificate"), "{e}");

    // The default (prefer) takes the TLS the server offers; disable goes without, which this server refuses.
    connect(&cluster.url("127.0.0.1", "")).await.unwrap();
    let e = refused(&cluster.url("127.0.0.1", "sslmode=disable")).await;
    assert!(e.contains("no encryption"), "{e}");
    assert!(e.contains("only over TLS"), "{e}");

    // A wrong password over TLS is refused without the URL's password in the message.
    let wrong = cluster
        .url("127.0.0.1", "sslmode=require")
        .replace(PASSWORD, "not-it");
    let e = refused(&wrong).await;
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("not-it"), "{e}");

    // verify-full without any CA: refused before connecting, saying what to add.
    if std::env::var_os("HOME").is_none_or(|h| !Path::new(&h).join(".postgresql/root.crt").exists())
    {
        let e = refused(&cluster.url("127.0.0.1", "sslmode=verify-full")).await;
        assert!(e.contains("add sslrootcert="), "{e}");
    }
}
