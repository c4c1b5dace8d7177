//! Janus, the load generator's comparison server: Debian's `janus`
//! package, started from a generated configuration folder with only the
//! VideoRoom plugin and the plain-HTTP transport, the API bound to
//! 127.0.0.1 on a free port, no admin API, ICE on the loopback interface
//! only (no STUN, no 1:1 NAT, no IPv6, no mDNS, half trickle), logging to a
//! file in that folder. Janus will not gather candidates on a loopback
//! interface by itself; a small preloaded shim (`LOOPBACK_SHIM_C` below)
//! lets it, so media stays on 127.0.0.1. [`crate::janus_link`] drives it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How to run Janus.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    /// The `janus` executable.
    pub binary: PathBuf,
    /// Folder for the generated configuration and the log. Kept afterwards
    /// when given; a temporary folder, removed on drop, when not.
    pub dir: Option<PathBuf>,
    /// Janus's `debug_level` (4, its default, logs sessions but no packets).
    pub debug_level: u8,
    /// Janus's `event_loops`: 0 (its default) gives every handle its own
    /// thread; a number shares that many loops among all handles.
    pub event_loops: u32,
    /// Run Janus on these CPUs only (`taskset -c` list), when given.
    pub cpus: Option<String>,
    /// For browsers behind the link emulator: Janus announces this address
    /// in its candidates instead of 127.0.0.1 (`nat_1_1_mapping`), and the
    /// emulator relays it to Janus's ports on 127.0.0.1.
    pub announce_ip: Option<std::net::IpAddr>,
    /// The UDP ports Janus's peer connections use (`rtp_port_range`), so
    /// that the emulator can relay each of them; any when `None`.
    pub rtp_ports: Option<(u16, u16)>,
    /// The API's port on 127.0.0.1; a free one when `None`.
    pub http_port: Option<u16>,
}

impl Default for JanusOptions {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("janus"),
            dir: None,
            debug_level: 4,
            event_loops: 0,
            cpus: None,
            announce_ip: None,
            rtp_ports: None,
            http_port: None,
        }
    }
}

/// The folder holding Debian's Janus plugins, transports… (architecture
/// dependent), read from the packaged configuration.
fn janus_lib_dir() -> Result<PathBuf> {
    if let Ok(cfg) = std::fs::read_to_string("/etc/janus/janus.jcfg") {
        let folder = cfg.lines().find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k.trim() == "plugins_folder").then(|| v.split('"').nth(1).map(PathBuf::from))?
        });
        if let Some(parent) = folder.as_deref().and_then(Path::parent) {
            return Ok(parent.to_owned());
        }
    }
    for base in ["/usr/lib", "/usr/local/lib"] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path().join("janus");
            if p.join("plugins").is_dir() {
                return Ok(p);
            }
        }
        let p = Path::new(base).join("janus");
        if p.join("plugins").is_dir() {
            return Ok(p);
        }
    }
    bail!("cannot find Janus's plugins folder: is Debian's janus package installed?")
}

/// Whether `name` is an executable on PATH (or a path that exists).
fn on_path(name: &Path) -> bool {
    if name.components().count() > 1 {
        return name.exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Installs Debian's `janus` package when `binary` is missing (as root),
/// and keeps the packaged system service, which listens on every interface,
/// from running: the benchmark starts its own instance.
pub fn ensure_installed(binary: &Path) -> Result<()> {
    if on_path(binary) {
        return Ok(());
    }
    if binary != Path::new("janus") {
        bail!("{} not found", binary.display());
    }
    eprintln!("janus is missing: installing Debian's janus package");
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    // A machine that never ran `apt-get update` may not know the package yet.
    let installed = apt(&["install", "-y", "-q", "janus"])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "janus"]));
    if !installed {
        bail!("apt-get install janus failed (run as root, or install it yourself)");
    }
    // Best effort: there is no systemd in a container, and that is fine.
    let _ = std::process::Command::new("systemctl")
        .args(["disable", "--now", "janus.service"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

/// Janus (`ice.c`) and libnice skip every interface flagged `IFF_LOOPBACK`
/// when they gather ICE candidates, so out of the box Janus cannot do ICE
/// on 127.0.0.1 at all (with `ice_enforce_list = "lo"` it finds no address
/// and libnice falls back to the machine's other interfaces). This shim,
/// preloaded into the Janus process only, reports `lo` without that flag;
/// it runs when a handle gathers candidates, never on the media path.
const LOOPBACK_SHIM_C: &str = r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>

int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **);
    if (!real)
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next)
            if (i->ifa_name && strcmp(i->ifa_name, "lo") == 0)
                i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"#;

/// Builds the loopback shim into `dir` with the system C compiler.
fn build_loopback_shim(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("loopback-shim.c");
    let lib = dir.join("loopback-shim.so");
    std::fs::write(&src, LOOPBACK_SHIM_C)?;
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .context("run cc (a C compiler is needed to build Janus's loopback shim)")?;
    if !out.status.success() {
        bail!("cc failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(lib)
}

/// A free TCP port on 127.0.0.1 (closed again: Janus binds it right after).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The configuration files, in Janus's libconfig-like `.jcfg` syntax.
fn write_config(dir: &Path, lib: &Path, port: u16, opts: &JanusOptions) -> Result<()> {
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // Janus loads every module in its folders: link only the two we want.
    for (sub, file) in [
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_http.so"),
    ] {
        let link = dir.join(sub).join(file);
        if !link.exists() {
            std::os::unix::fs::symlink(lib.join(sub).join(file), &link)
                .with_context(|| format!("link {}", link.display()))?;
        }
    }
    let d = dir.display();
    let event_loops = if opts.event_loops > 0 {
        format!("\tevent_loops = {}\n", opts.event_loops)
    } else {
        String::new()
    };
    let rtp_ports = opts
        .rtp_ports
        .map(|(a, b)| format!("\trtp_port_range = \"{a}-{b}\"\n"))
        .unwrap_or_default();
    let announce = opts
        .announce_ip
        .map(|ip| format!("\tnat_1_1_mapping = \"{ip}\"\n\tkeep_private_host = false\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"general: {{
	configs_folder = "{d}"
	plugins_folder = "{d}/plugins"
	transports_folder = "{d}/transports"
	events_folder = "{d}/events"
	loggers_folder = "{d}/loggers"
	log_to_stdout = false
	log_to_file = "{d}/janus.log"
	debug_level = {level}
	debug_timestamps = true
	debug_colors = false
	interface = "127.0.0.1"
	server_name = "loadgen"
	session_timeout = 60
	hide_dependencies = false
{event_loops}}}
certificates: {{
}}
media: {{
	ipv6 = false
{rtp_ports}}}
nat: {{
	nice_debug = false
	full_trickle = false
	ignore_mdns = true
	ice_enforce_list = "lo"
{announce}}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"#,
            level = opts.debug_level,
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            r#"general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"#
        ),
    )?;
    // No static rooms: the generator creates one per consultation.
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

/// A Janus process started from a generated configuration. Dropping it
/// kills the process.
pub struct JanusServer {
    child: tokio::process::Child,
    dir: PathBuf,
    remove_dir: bool,
    /// Base URL of the Janus API, `http://127.0.0.1:PORT/janus`.
    pub url: String,
    /// Janus's version, from its `info` answer.
    pub version: String,
}

impl JanusServer {
    /// Writes the configuration, starts Janus and waits until its API answers.
    pub async fn start(opts: &JanusOptions) -> Result<JanusServer> {
        let lib = janus_lib_dir()?;
        let (dir, remove_dir) = match &opts.dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("loadgen-janus-{}-{}", std::process::id(), free_port()?)),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        let port = match opts.http_port {
            Some(p) => p,
            None => free_port()?,
        };
        write_config(&dir, &lib, port, opts)?;
        let shim = build_loopback_shim(&dir)?;
        let out = std::fs::File::create(dir.join("janus.stdout"))?;
        let child = crate::server_command(&opts.binary, opts.cpus.as_deref())
            .env("LD_PRELOAD", &shim)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", opts.binary.display()))?;
        let mut server = JanusServer {
            child,
            dir,
            remove_dir,
            url: format!("http://127.0.0.1:{port}/janus"),
            version: String::new(),
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("janus exited ({status}):\n{}", server.log_tail());
            }
            let info = http
                .get(format!("{}/info", server.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(resp) = info {
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                if v["janus"] == "server_info" {
                    server.version = v["version_string"].as_str().unwrap_or("?").to_owned();
                    return Ok(server);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("janus did not answer within 20 s:\n{}", server.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (for CPU time and memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The configuration folder (with `janus.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of Janus's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for f in ["janus.log", "janus.stdout"] {
            if let Ok(s) = std::fs::read_to_string(self.dir.join(f)) {
                let lines: Vec<&str> = s.lines().collect();
                text.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
                text.push('\n');
            }
        }
        text
    }

    /// Stops Janus (SIGKILL: nothing of its state matters afterwards).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
