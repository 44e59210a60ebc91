//! A throwaway PostgreSQL cluster for tests.
//!
//! [`PgCluster`] starts one (initdb + pg_ctl in a temp dir, trust
//! auth, a free port on 127.0.0.1) and removes it on drop. It needs the PostgreSQL server
//! binaries (Debian/Ubuntu: `apt-get install postgresql`); it looks in `$DUALROUTER_PG_BIN`, then
//! the newest `/usr/lib/postgresql/*/bin`. Run as root, it runs them as the `postgres` user
//! through `runuser` (initdb refuses root). Without the binaries the test fails, naming the
//! package, unless `DUALROUTER_SKIP_PG_TESTS=1` is set (then [`PgCluster::start`] returns `None`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

pub use crate::net::ReservedPort;

/// A port nobody listens on, kept so while the value lives (see `ReservedPort`).
pub fn free_port() -> ReservedPort {
    ReservedPort::new()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("DUALROUTER_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    port: ReservedPort,
    as_postgres: bool,
}

impl PgCluster {
    /// initdb + start (about a second or two). `None` only when the binaries are missing and
    /// `DUALROUTER_SKIP_PG_TESTS=1`.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = pg_bin_dir() else {
            if std::env::var("DUALROUTER_SKIP_PG_TESTS").as_deref() == Ok("1") {
                eprintln!("PostgreSQL binaries not found; skipping (DUALROUTER_SKIP_PG_TESTS=1)");
                return None;
            }
            panic!(
                "PostgreSQL server binaries not found (looked in $DUALROUTER_PG_BIN and \
                 /usr/lib/postgresql/*/bin). Install them: apt-get install postgresql \
                 (or set DUALROUTER_SKIP_PG_TESTS=1 to skip the PostgreSQL tests)"
            );
        };
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("dualrouter-pg-")
            .tempdir()
            .unwrap();
        // mktemp makes it 0700; the postgres user must reach into it.
        set_mode(dir.path(), 0o755);
        for sub in ["data", "run"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).unwrap();
            set_mode(&p, 0o700);
            if as_postgres {
                let out = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&p)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "chown: {}", show(&out));
            }
        }
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.data_dir();
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", show(&out));
        cluster.start_server();
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    /// Starts the server (again) on the same port and data; waits until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port.port(),
            self.run_dir().display()
        );
        let log = self.run_dir().join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            show(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: open connections are cut); data is kept.
    pub fn stop_server(&self) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", show(&out));
    }

    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port.port()
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: nothing to keep. Ignore failure (already stopped).
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
