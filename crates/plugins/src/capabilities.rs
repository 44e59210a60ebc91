//! The host capabilities a plugin may be granted: running an allowed program, and HTTP to
//! allowed hosts. Both are bounded by the plugin's limits and by what is left of the current
//! call's deadline, and both refuse anything not granted in config.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::v0_1_0::{http, process};
use dualrouter_core::config::plugins::{PluginConfig, MAX_COMMAND_STDERR_BYTES};

/// How often a running command is checked for exit, overflow and deadline.
const COMMAND_POLL: Duration = Duration::from_millis(2);

/// The timeout of one capability call: the guest's wish (0: none), cut to the plugin's limit
/// and to what is left of the call's deadline.
fn effective_timeout(requested_ms: u32, limit: Duration, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut t = limit.min(left);
    if requested_ms > 0 {
        t = t.min(Duration::from_millis(u64::from(requested_ms)));
    }
    t
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Whether `program` is granted: exactly one of `allow_commands` (a bare name, looked up on
/// PATH when run, or an absolute path).
pub(crate) fn command_allowed(cfg: &PluginConfig, program: &str) -> bool {
    !program.is_empty() && cfg.allow_commands.iter().any(|c| c == program)
}

/// Runs a granted program to completion (see the WIT `process.run`).
pub(crate) fn run_command(
    cfg: &PluginConfig,
    cmd: process::Command,
    deadline: Instant,
) -> Result<process::CommandOutput, process::CommandError> {
    if !command_allowed(cfg, &cmd.program) {
        tracing::warn!(plugin = %cfg.name, program = %cmd.program, "plugin tried to run a command it is not allowed");
        return Err(process::CommandError::NotAllowed(format!(
            "'{}' is not in allow_commands of plugin '{}' (allowed: {})",
            cmd.program,
            cfg.name,
            if cfg.allow_commands.is_empty() {
                "none".to_string()
            } else {
                cfg.allow_commands.join(", ")
            }
        )));
    }
    let timeout = effective_timeout(cmd.timeout_ms, cfg.command_timeout, deadline);
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout kills whatever it started too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| {
        process::CommandError::SpawnFailed(format!("cannot start '{}': {e}", cmd.program))
    })?;
    let pid = child.id();
    let kill_group = move || {
        // SAFETY: kill(2) with a negative pid signals the process group we created above.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    };

    let stdin_data = cmd.stdin;
    let mut stdin = child.stdin.take();
    let feeder = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&stdin_data);
        }
        drop(stdin);
    });
    let overflow = Arc::new(AtomicBool::new(false));
    let cap = cfg.max_command_output_bytes;
    let mut stdout = child.stdout.take();
    let over = overflow.clone();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if buf.len() + n > cap {
                            over.store(true, Ordering::SeqCst);
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        buf
    });
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut chunk = [0u8; 8 * 1024];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_COMMAND_STDERR_BYTES.saturating_sub(buf.len());
                        buf.extend_from_slice(&chunk[..n.min(room)]);
                    }
                }
            }
        }
        buf
    });

    let started = Instant::now();
    let status = loop {
        if overflow.load(Ordering::SeqCst) {
            kill_group();
            let _ = child.wait();
            break None;
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                kill_group();
                let _ = child.wait();
                return Err(process::CommandError::SpawnFailed(format!(
                    "waiting for '{}': {e}",
                    cmd.program
                )));
            }
        }
        if started.elapsed() >= timeout {
            kill_group();
            let _ = child.wait();
            tracing::warn!(plugin = %cfg.name, program = %cmd.program, timeout_ms = millis(timeout), "plugin command timed out and was killed");
            // The readers end once the group is gone and the pipes close.
            let _ = (feeder.join(), out_reader.join(), err_reader.join());
            return Err(process::CommandError::TimedOut(millis(timeout)));
        }
        std::thread::sleep(COMMAND_POLL);
    };
    // The child is done; anything it left running in its group goes too, so the pipes close.
    kill_group();
    let _ = feeder.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let Some(status) = status else {
        tracing::warn!(plugin = %cfg.name, program = %cmd.program, cap, "plugin command output exceeded the cap; killed");
        return Err(process::CommandError::OutputTooLarge(cap as u64));
    };
    Ok(process::CommandOutput {
        exit_code: status.code(),
        stdout,
        stderr,
    })
}

/// Whether `host` (lower case) on `port` is granted by `allow_hosts`: `host` (any port),
/// `host:port`, or `*.domain` (any subdomain, any port).
pub(crate) fn host_allowed(cfg: &PluginConfig, host: &str, port: u16) -> bool {
    cfg.allow_hosts.iter().any(|entry| {
        let (pattern, want_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                (h, p.parse::<u16>().ok())
            }
            _ => (entry.as_str(), None),
        };
        let port_ok = want_port.is_none_or(|p| p == port);
        let host_ok = match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => pattern == host,
        };
        port_ok && host_ok
    })
}

/// The HTTP side of the host: one client (no redirects, so an allowed host cannot bounce a
/// plugin to another) on a small runtime of its own, so guest calls block only their own thread.
/// Both are made on first use: a host whose plugins never send HTTP starts no thread for it.
#[derive(Default)]
pub(crate) struct HttpCapability {
    inner: std::sync::OnceLock<Result<(tokio::runtime::Runtime, reqwest::Client), String>>,
}

impl HttpCapability {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> Result<&(tokio::runtime::Runtime, reqwest::Client), String> {
        self.inner
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("plugin-http")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the plugin HTTP runtime: {e}"))?;
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the plugin HTTP client: {e}"))?;
                Ok((runtime, client))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends a granted request (see the WIT `http.send`).
    pub(crate) fn send(
        &self,
        cfg: &PluginConfig,
        req: http::Request,
        deadline: Instant,
    ) -> Result<http::Response, http::HttpError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| http::HttpError::InvalidRequest(format!("bad URL '{}': {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(http::HttpError::InvalidRequest(format!(
                "scheme '{}' is not http or https",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        if !host_allowed(cfg, &host, port) {
            tracing::warn!(plugin = %cfg.name, host = %host, port, "plugin tried to reach a host it is not allowed");
            return Err(http::HttpError::NotAllowed(format!(
                "{host}:{port} is not in allow_hosts of plugin '{}'",
                cfg.name
            )));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| http::HttpError::InvalidRequest(format!("bad method '{}'", req.method)))?;
        let (rt, client) = self.inner().map_err(http::HttpError::Failed)?;
        let mut builder = client.request(method, url);
        for (k, v) in &req.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| http::HttpError::InvalidRequest(format!("bad header name '{k}'")))?;
            let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                http::HttpError::InvalidRequest(format!("bad value for header '{k}'"))
            })?;
            builder = builder.header(name, value);
        }
        let timeout = effective_timeout(req.timeout_ms, cfg.timeout, deadline);
        let cap = cfg.max_http_response_bytes;
        let fut = async move {
            let mut resp = builder
                .body(req.body)
                .send()
                .await
                .map_err(|e| http::HttpError::Failed(e.to_string()))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| http::HttpError::Failed(e.to_string()))?
            {
                if body.len() + chunk.len() > cap {
                    return Err(http::HttpError::TooLarge(cap as u64));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(http::Response {
                status,
                headers,
                body,
            })
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = rt.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(http::HttpError::TimedOut(millis(timeout))),
            };
            let _ = tx.send(r);
        });
        match rx.recv_timeout(timeout + Duration::from_millis(50)) {
            Ok(r) => r,
            Err(_) => {
                task.abort();
                Err(http::HttpError::TimedOut(millis(timeout)))
            }
        }
    }
}

impl Drop for HttpCapability {
    fn drop(&mut self) {
        // Never block (dropping a runtime inside another runtime's task would panic).
        if let Some(Ok((rt, _))) = self.inner.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dualrouter_core::config::plugins::PluginKind;

    fn cfg() -> PluginConfig {
        let mut c = PluginConfig::new("t", "t.wasm", PluginKind::Executor);
        c.allow_commands = vec!["echo".into(), "sleep".into(), "yes".into()];
        c.allow_hosts = vec![
            "api.example.com".into(),
            "127.0.0.1:8080".into(),
            "*.corp.test".into(),
        ];
        c.command_timeout = Duration::from_secs(5);
        c.max_command_output_bytes = 64 * 1024;
        c
    }

    fn command(program: &str, args: &[&str], timeout_ms: u32) -> process::Command {
        process::Command {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: Vec::new(),
            timeout_ms,
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn hosts() {
        let c = cfg();
        assert!(host_allowed(&c, "api.example.com", 443));
        assert!(!host_allowed(&c, "evil.example.com", 443));
        assert!(host_allowed(&c, "127.0.0.1", 8080));
        assert!(!host_allowed(&c, "127.0.0.1", 8081));
        assert!(host_allowed(&c, "a.b.corp.test", 80));
        assert!(!host_allowed(&c, "corp.test", 80));
    }

    #[test]
    fn runs_allowed_command_and_captures_output() {
        let out = run_command(&cfg(), command("echo", &["hi", "there"], 0), far()).unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.stdout, b"hi there\n");
    }

    #[test]
    fn refuses_other_commands() {
        let err = run_command(&cfg(), command("sh", &["-c", "true"], 0), far()).unwrap_err();
        assert!(matches!(err, process::CommandError::NotAllowed(_)));
        // A path to an allowed name is not the allowed name.
        let err = run_command(&cfg(), command("/bin/echo", &["x"], 0), far()).unwrap_err();
        assert!(matches!(err, process::CommandError::NotAllowed(_)));
    }

    #[test]
    fn kills_on_timeout_and_on_deadline() {
        let t = Instant::now();
        let err = run_command(&cfg(), command("sleep", &["5"], 100), far()).unwrap_err();
        assert!(
            matches!(err, process::CommandError::TimedOut(100)),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        // The call's own deadline wins over a longer requested timeout.
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_millis(150);
        let err = run_command(&cfg(), command("sleep", &["5"], 0), deadline).unwrap_err();
        assert!(matches!(err, process::CommandError::TimedOut(_)), "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn kills_on_output_flood() {
        let err = run_command(&cfg(), command("yes", &[], 0), far()).unwrap_err();
        assert!(
            matches!(err, process::CommandError::OutputTooLarge(65536)),
            "{err:?}"
        );
    }
}
