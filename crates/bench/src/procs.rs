//! The processes a benchmark runs: `spendgate mock-upstream` and `spendgate serve`, on loopback ports, killed
//! when dropped so that no run leaves a server behind.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process, killed and reaped on drop.
pub struct Child {
    name: String,
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited unexpectedly ({status}); see its log in the work directory",
                self.name
            );
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released; the child binds it right after).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?)
}

fn log_file(work: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = work.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("could not create {}", path.display()))
}

/// Waits until `addr` accepts TCP connections, for at most `limit`.
pub async fn wait_listening(child: &mut Child, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        child.check_alive()?;
        if tokio::net::TcpStream::connect(child.addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on {} within {:?}",
                child.name,
                child.addr,
                limit
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `spendgate mock-upstream`: the zero-delay OpenAI-compatible upstream.
pub async fn mock_upstream(bin: &Path, work: &Path) -> anyhow::Result<Child> {
    let addr = free_addr()?;
    let child = Command::new(bin)
        .args(["mock-upstream", "--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(work, "mock-upstream")?)
        .spawn()
        .with_context(|| format!("could not start {} mock-upstream", bin.display()))?;
    let mut c = Child {
        name: "mock-upstream".into(),
        child,
        addr,
    };
    wait_listening(&mut c, Duration::from_secs(20)).await?;
    Ok(c)
}

/// Writes a serve configuration whose only provider is an OpenAI-compatible upstream at `upstream` serving
/// every catalog model of "openai".
pub fn write_config(
    work: &Path,
    name: &str,
    upstream: Option<SocketAddr>,
) -> anyhow::Result<PathBuf> {
    // One key opens every stream of the memory figure, so the per-key stream limit is lifted.
    let mut text =
        String::from("# Written by spendgate-bench.\n[limits]\nmax_streams_per_key = 100000\n");
    if let Some(u) = upstream {
        text.push_str(&format!(
            "[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://{u}/v1\"\ncatalog = true\n"
        ));
    }
    let path = work.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

/// `spendgate keys create`: prints only the key.
pub fn create_key(bin: &Path, data_dir: &Path, user: &str, team: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args([
            "keys",
            "create",
            "--user",
            user,
            "--team",
            team,
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("could not run spendgate keys create")?;
    if !out.status.success() {
        bail!(
            "spendgate keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let key = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(
        key.starts_with("sk-"),
        "spendgate keys create printed no key"
    );
    Ok(key)
}

/// `spendgate serve` with full metering (key auth, pricing, spend log, rollups) on `data_dir`.
pub async fn serve(
    bin: &Path,
    work: &Path,
    name: &str,
    config: &Path,
    data_dir: &Path,
    admin_token: &str,
) -> anyhow::Result<Child> {
    serve_with(bin, work, name, config, data_dir, admin_token, &[]).await
}

/// Like [`serve`], with more arguments for `serve` (`--store <url>`).
pub async fn serve_with(
    bin: &Path,
    work: &Path,
    name: &str,
    config: &Path,
    data_dir: &Path,
    admin_token: &str,
    extra: &[&str],
) -> anyhow::Result<Child> {
    let addr = free_addr()?;
    let child = Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .args([
            "--listen",
            &addr.to_string(),
            "--gateway-name",
            "bench-gateway",
        ])
        .env("SPENDGATE_ADMIN_TOKEN", admin_token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(work, name)?)
        .spawn()
        .with_context(|| format!("could not start {} serve", bin.display()))?;
    let mut c = Child {
        name: name.to_string(),
        child,
        addr,
    };
    wait_listening(&mut c, Duration::from_secs(30)).await?;
    Ok(c)
}

/// A field of /proc/<pid>/status in kB (VmRSS, VmHWM).
pub fn proc_status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("could not read /proc/<pid>/status")?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return Ok(kb.parse()?);
        }
    }
    bail!("/proc/{pid}/status has no {field}")
}

/// The CPU time a process (`"self"` or a pid) has used so far, user and system, in milliseconds
/// (`/proc/<pid>/stat`). The kernel counts it in ticks of its USER_HZ, which is 100 on Linux, so the figure moves
/// in steps of 10 ms. Unlike wall-clock time it leaves out what other processes and the hypervisor took from the
/// machine meanwhile.
pub fn cpu_ms(pid: impl std::fmt::Display) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces; after it come fields 3 onwards, so utime
    // and stime (fields 14 and 15) are the 12th and 13th.
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("{path} has fewer fields than expected"))?
            .parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) * 10)
}

/// The CPU time, in milliseconds, that every process named `comm` has used so far, their reaped children's
/// included (`cutime` and `cstime`: a PostgreSQL backend that exits moves its time to the postmaster's), or `None`
/// when there is no such process here (a server on another machine). For the PostgreSQL ingest figures: the
/// server's processes do most of the work, and their CPU time moves far less with the machine's other tenants
/// than the wall clock does (other clients of the same server add theirs, though).
pub fn cpu_ms_of_all(comm: &str) -> Option<u64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let same = std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim_end() == comm);
        let Some(stat) = same
            .then(|| std::fs::read_to_string(path.join("stat")).ok())
            .flatten()
        else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // utime, stime, cutime, cstime: fields 14 to 17, the 12th to 15th after the command name.
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        *total.get_or_insert(0) += ticks * 10;
    }
    total
}

/// The bytes a process has caused to be sent to the storage layer so far (`write_bytes` in `/proc/<pid>/io`):
/// its own writes and the page-cache write-back charged to it, so the WAL's appends and the checkpoints' copies
/// both count. A count, not a time, so the machine's noise does not move it.
pub fn write_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("write_bytes:") {
            return Ok(rest.trim().parse()?);
        }
    }
    bail!("{path} has no write_bytes")
}

/// A fresh, empty directory.
pub fn fresh_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("could not empty {}", path.display()))?;
    }
    std::fs::create_dir_all(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    Ok(path.to_path_buf())
}
