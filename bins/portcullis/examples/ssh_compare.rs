//! Side-by-side SSH benchmark: straight to sshd, through an OpenSSH jump host
//! (`ProxyJump`), and through the Portcullis gateway with recording on (sled store,
//! batched durability; terminals written as asciicast files), in alternating rounds.
//!
//! Run with `benches/ssh_compare.sh` (builds the release gateway first), or:
//! `cargo run --release -p portcullis --example ssh_compare`.
//!
//! Measures
//! - bulk throughput: `ssh HOST 'head -c BYTES /dev/zero'`, the client's stdout counted
//!   and thrown away, timed from the first byte to the last (login time shown apart);
//! - keystroke echo: `benches/ssh_echo.py` drives the real `ssh -tt` on a local
//!   pseudo-terminal into an interactive shell and times one byte out and back, KEYS times.
//!
//! Ciphers: OpenSSH hops use `BENCH_CIPHER` (default aes128-gcm@openssh.com). Both
//! Portcullis hops run aes256-gcm@openssh.com, as in the published numbers (taken before the
//! gateway offered aes128-gcm); `direct-aes256` is the same-cipher reference.
//!
//! Environment: `BENCH_BYTES` (default 1 GiB), `BENCH_ROUNDS` (default 3), `BENCH_KEYS`
//! (keystrokes per echo run, default 2000), `BENCH_CIPHER`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{Process, Sshd, SshdOptions, free_port, generate_keypair, wait_for_tcp};

const GATEWAY_CIPHER: &str = "aes256-gcm@openssh.com";
const PATHS: [&str; 4] = ["direct", "direct-aes256", "proxyjump", "portcullis"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/ssh_compare -> target/release/portcullis
    exe.parent().unwrap().parent().unwrap().join("portcullis")
}

fn echo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/ssh_echo.py")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn start_gateway(dir: &Path, sshd: &Sshd, client_pub: &str) -> (Process, u16) {
    let gw_key = generate_keypair(dir, "gateway_id").unwrap();
    let host_key = generate_keypair(dir, "gateway_host").unwrap();
    sshd.authorize(&gw_key.public_key).unwrap();
    let port = free_port().unwrap();
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[recording]
path = "{store}"
durability = "batched"

[identity.dev_signer]
issuer = "bench"
audience = "portcullis"
secret = "bench-signing-secret-0123456789abcdef"

[ssh]
listen = "127.0.0.1:{port}"
[ssh.settings]
host_key_file = "{host_key}"
recordings_dir = "{casts}"
[[ssh.settings.keys]]
subject = "bench"
groups = ["bench"]
public_key = "{client_pub}"

[targets.bench]
protocol = "ssh"
allowed_groups = ["bench"]
[targets.bench.upstream]
address = "127.0.0.1:{up}"
user = "{user}"
private_key_file = "{gw_key}"
host_keys = ["{host_pin}"]
"#,
            store = dir.join("recording").display(),
            host_key = host_key.private_key.display(),
            casts = dir.join("casts").display(),
            up = sshd.port(),
            user = sshd.user(),
            gw_key = gw_key.private_key.display(),
            host_pin = sshd.host_public_key(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    let p = Process::spawn("portcullis", &mut cmd).unwrap();
    wait_for_tcp(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20),
    )
    .unwrap();
    (p, port)
}

/// One ssh_config with a host alias per path. Specific blocks come first: ssh keeps
/// the first value it reads for each option.
fn write_ssh_config(
    dir: &Path,
    identity: &Path,
    user: &str,
    target: &Sshd,
    jump: &Sshd,
    gw_port: u16,
    cipher: &str,
) -> PathBuf {
    let path = dir.join("ssh_config");
    std::fs::write(
        &path,
        format!(
            "Host direct\n  Port {target}\n\
             Host direct-aes256\n  Port {target}\n  Ciphers {GATEWAY_CIPHER}\n\
             Host jump\n  Port {jump}\n\
             Host proxyjump\n  Port {target}\n  ProxyJump jump\n\
             Host portcullis\n  Port {gw_port}\n  User bench\n  Ciphers {GATEWAY_CIPHER}\n\
             Host *\n  HostName 127.0.0.1\n  User {user}\n  IdentityFile {identity}\n\
             \x20 IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n\
             \x20 UserKnownHostsFile {known}\n  LogLevel ERROR\n  Ciphers {cipher}\n\
             \x20 Compression no\n  ControlMaster no\n  ConnectTimeout 20\n",
            target = target.port(),
            jump = jump.port(),
            identity = identity.display(),
            known = dir.join("known_hosts").display(),
        ),
    )
    .unwrap();
    path
}

struct Transfer {
    login: Duration,
    data: Duration,
}

fn transfer(config: &Path, host: &str, bytes: u64) -> Transfer {
    let started = Instant::now();
    let mut child = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .arg(host)
        .arg(format!("head -c {bytes} /dev/zero"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    let last = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && got == bytes,
        "{host}: got {got} of {bytes} bytes, {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let first = first.unwrap_or(last);
    Transfer {
        login: first - started,
        data: last - first,
    }
}

fn echo(config: &Path, host: &str, keys: usize) -> Vec<f64> {
    let out = Command::new("python3")
        .arg(echo_script())
        .arg(keys.to_string())
        .arg("50")
        .arg("--")
        .args(["ssh", "-tt", "-F"])
        .arg(config)
        .arg(host)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{host}: echo driver failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("samples_us="))
        .unwrap_or_else(|| panic!("{host}: no samples in {text}"))
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    let bytes: u64 = env_or("BENCH_BYTES", 1 << 30);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let keys: usize = env_or("BENCH_KEYS", 2000);
    let cipher = std::env::var("BENCH_CIPHER").unwrap_or_else(|_| "aes128-gcm@openssh.com".into());
    if !gateway_bin().exists() {
        panic!(
            "{} not found: build it with cargo build --release -p portcullis",
            gateway_bin().display()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let client = generate_keypair(dir.path(), "client").unwrap();
    // Both sshds accept the ciphers in use and nothing slower, so every hop that does
    // not name a cipher (the gateway's upstream login) settles on AES-GCM too.
    let ciphers = format!("Ciphers {cipher},{GATEWAY_CIPHER}");
    let options = || {
        SshdOptions {
            extra_config: vec![ciphers.clone()],
            ..SshdOptions::default()
        }
        .authorize(client.public_key.clone())
    };
    let target = Sshd::start(options()).unwrap();
    let jump = Sshd::start(options()).unwrap();
    let (_gateway, gw_port) = start_gateway(dir.path(), &target, &client.public_key);
    let config = write_ssh_config(
        dir.path(),
        &client.private_key,
        target.user(),
        &target,
        &jump,
        gw_port,
        &cipher,
    );
    // Warm up every path (host keys learned, page cache, gateway connection setup).
    for host in PATHS {
        transfer(&config, host, 1 << 20);
    }

    println!(
        "SSH comparison: {} MiB per transfer, {keys} keystrokes per echo run, {rounds} alternating rounds; \
         {} cores, load average {} at start (the machine is shared: numbers vary between runs)",
        bytes >> 20,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load()
    );
    println!(
        "ciphers: direct and proxyjump {cipher} on every hop; portcullis and direct-aes256 {GATEWAY_CIPHER}"
    );
    println!(
        "portcullis: recording on (sled store, batched durability), no masking on the target; \
         echo runs write an asciicast file"
    );

    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut logins: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut echoes: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for i in 0..PATHS.len() {
            let host = PATHS[(i + round) % PATHS.len()];
            let t = transfer(&config, host, bytes);
            let mbs = bytes as f64 / 1e6 / t.data.as_secs_f64().max(1e-9);
            println!(
                "  round {} {host:<14} {mbs:>8.1} MB/s  (login {:.0} ms)",
                round + 1,
                t.login.as_secs_f64() * 1e3
            );
            rates.entry(host).or_default().push(mbs);
            logins
                .entry(host)
                .or_default()
                .push(t.login.as_secs_f64() * 1e3);
        }
        for i in 0..PATHS.len() {
            let host = PATHS[(i + round) % PATHS.len()];
            echoes
                .entry(host)
                .or_default()
                .extend(echo(&config, host, keys));
        }
    }

    println!(
        "\nthroughput, {} MiB from `head -c` (median of {rounds})",
        bytes >> 20
    );
    let rate = |h: &str| median(rates[h].clone());
    for host in PATHS {
        println!(
            "  {host:<14} {:>8.1} MB/s   login {:>5.0} ms   {:.2}x of direct",
            rate(host),
            median(logins[host].clone()),
            rate(host) / rate("direct")
        );
    }
    let vs_direct = rate("portcullis") / rate("direct");
    let vs_jump = rate("portcullis") / rate("proxyjump");
    println!(
        "  goals: portcullis/direct = {vs_direct:.2}x (goal >= 0.60x: {}), \
         portcullis/proxyjump = {vs_jump:.2}x (goal >= 1.25x: {}), \
         portcullis/direct-aes256 = {:.2}x",
        verdict(vs_direct >= 0.6),
        verdict(vs_jump >= 1.25),
        rate("portcullis") / rate("direct-aes256"),
    );

    println!(
        "\nkeystroke echo through a PTY shell, µs ({} samples per path)",
        keys * rounds
    );
    let mut p50s = BTreeMap::new();
    for host in PATHS {
        let mut s = echoes[host].clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(&s, 0.5), percentile(&s, 0.99));
        p50s.insert(host, p50);
        println!(
            "  {host:<14} p50 {p50:>7.1}   p99 {p99:>7.1}   mean {:>7.1}",
            s.iter().sum::<f64>() / s.len() as f64
        );
    }
    println!(
        "  goals: portcullis p50 = {:.1} µs (goal <= 180 µs: {}); added vs direct {:+.1} µs, \
         vs proxyjump {:+.1} µs",
        p50s["portcullis"],
        verdict(p50s["portcullis"] <= 180.0),
        p50s["portcullis"] - p50s["direct"],
        p50s["portcullis"] - p50s["proxyjump"],
    );
    println!("\nload average at the end: {}", load());
    drop(jump);
    drop(target);
}
