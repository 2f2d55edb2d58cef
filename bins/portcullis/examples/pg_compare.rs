//! Side-by-side PostgreSQL benchmark: direct, through PgBouncer (transaction pooling)
//! and through Portcullis (recording on), in alternating rounds, with ratios.
//!
//! Run with `benches/pg_compare.sh` (builds the release gateway first), or:
//! `cargo run --release -p portcullis --example pg_compare`.
//! Environment: `BENCH_SECONDS` (per run, default 10), `BENCH_ROUNDS` (default 3),
//! `BENCH_DURABILITY` (`batched` or `strict`, default batched), `BENCH_WRITER_PRIORITY`
//! (the recorder's `writer_priority`, `normal` or `idle`, default normal), `BENCH_RECORDING` (more
//! `[recording]` lines for the recorded gateways, say `flush_events = 4096`). `BENCH_PATHS` naming
//! `idle` adds a third gateway, recorded with `writer_priority = "idle"`, as path `idle`;
//! `PORTCULLIS_BIN` runs another gateway binary than `target/release/portcullis`;
//! naming `alt` adds a recorded gateway run from `PORTCULLIS_ALT_BIN` (default: this build)
//! with `BENCH_ALT_RECORDING`'s `[recording]` lines, as path `alt`, for A/B series, its store
//! under `BENCH_ALT_DIR` when set (say a tmpfs, to see what the disk writes cost). Extra
//! lines that set `writer_priority` replace the default one.
//! The gateway serves two
//! targets on the same database: `bench` (recording and policy) and `bench_masked` (the
//! same plus every built-in masking detector), measured side by side.
//! With `PORTCULLIS_UNRECORDED_BIN` naming a gateway built with the
//! `bench-discard-store` feature (the script builds one), a second gateway with the
//! same policy but `store = "discard:"` runs too (`unrecorded`), and the cost of
//! recording is printed as `1 - portcullis/unrecorded`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_testkit::{
    PgAuth, PgBouncer, PgBouncerOptions, PgCluster, PgOptions, Process, free_port, wait_for_tcp,
};

const PASSWORD: &str = "bench-upstream-pw";

struct Run {
    tps: f64,
    latency_ms: f64,
}

fn pgbench(port: u16, user: &str, password: &str, db: &str, args: &[&str], seconds: u64) -> Run {
    let out = Command::new("pgbench")
        .args(["-n", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", user, "-T"])
        .arg(seconds.to_string())
        .args(args)
        .arg(db)
        .env("PGPASSWORD", password)
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "pgbench failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no '{prefix}' in pgbench output:\n{text}"))
    };
    Run {
        tps: field("tps = "),
        latency_ms: field("latency average = "),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The `[recording]` lines of a recorded gateway in `dir`: `extra` (from BENCH_RECORDING or
/// BENCH_ALT_RECORDING) after the defaults, and its own `writer_priority` instead of
/// `priority` if it sets one (TOML refuses a key given twice).
fn recorded_lines(dir: &Path, durability: &str, priority: &str, extra: &str) -> String {
    let priority = if extra.contains("writer_priority") {
        String::new()
    } else {
        format!("writer_priority = \"{priority}\"\n")
    };
    format!(
        "path = \"{}\"\ndurability = \"{durability}\"\n{priority}{extra}",
        dir.join("recording").display()
    )
}

fn gateway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/pg_compare -> target/release/portcullis
    exe.parent().unwrap().parent().unwrap().join("portcullis")
}

fn start_gateway(bin: &Path, dir: &Path, pg: &PgCluster, recording: &str) -> (Process, u16) {
    let port = free_port().unwrap();
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[recording]
{recording}

[identity.dev_signer]
issuer = "bench"
audience = "portcullis"
secret = "bench-signing-secret-0123456789abcdef"

[postgres]
listen = "127.0.0.1:{port}"

[targets.bench]
protocol = "postgres"
allowed_groups = ["bench"]
[targets.bench.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "bencher"
password = "{PASSWORD}"
[targets.bench.policy]
default = "deny"
[[targets.bench.policy.rules]]
id = "bench"
groups = ["bench"]
kinds = ["read", "write", "transaction", "session", "utility"]
action = "allow"

[targets.bench_masked]
protocol = "postgres"
allowed_groups = ["bench"]
[targets.bench_masked.upstream]
address = "127.0.0.1:{up}"
database = "{db}"
user = "bencher"
password = "{PASSWORD}"
[targets.bench_masked.masking]
enabled = true
"#,
            up = pg.port(),
            db = pg.database(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut cmd = Command::new(bin);
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

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let durability = std::env::var("BENCH_DURABILITY").unwrap_or_else(|_| "batched".into());
    let priority = std::env::var("BENCH_WRITER_PRIORITY").unwrap_or_else(|_| "normal".into());
    if !gateway_bin().exists() {
        panic!(
            "{} not found: build it with cargo build --release -p portcullis",
            gateway_bin().display()
        );
    }

    let pg = PgCluster::start(
        PgOptions {
            log_statement: false,
            log_connections: false,
            ..PgOptions::default()
        }
        .user("bencher", PASSWORD, PgAuth::ScramSha256)
        .setting("max_connections", "100"),
    )
    .unwrap();
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p"])
        .arg(pg.port().to_string())
        .args(["-U", "bencher", pg.database()])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let bouncer = PgBouncer::start(
        &pg,
        PgBouncerOptions {
            pool_size: 20,
            ..PgBouncerOptions::default()
        },
    )
    .unwrap();
    // BENCH_PATHS=portcullis,unrecorded (say) runs only those paths; BENCH_SCENARIOS=1,2
    // only those scenarios (numbered from 1), for longer A/B series.
    let only = |var: &str| -> Option<Vec<String>> {
        std::env::var(var)
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
    };
    // BENCH_RECORDING: more `[recording]` lines for the recorded gateways (say
    // `flush_events = 4096`), to compare settings.
    let extra = std::env::var("BENCH_RECORDING").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let recording = recorded_lines(dir.path(), &durability, &priority, &extra);
    let (_gateway, gw_port) = start_gateway(&gateway_bin(), dir.path(), &pg, &recording);
    let unrecorded_dir = tempfile::tempdir().unwrap();
    let unrecorded = std::env::var_os("PORTCULLIS_UNRECORDED_BIN").map(|bin| {
        let recording = format!(
            "store = \"discard:\"\nsigning_key = \"{}\"\ndurability = \"{durability}\"\nwriter_priority = \"{priority}\"",
            unrecorded_dir.path().join("signing-key.pem").display()
        );
        start_gateway(Path::new(&bin), unrecorded_dir.path(), &pg, &recording)
    });
    // A third gateway, recorded with the writer at idle priority, when BENCH_PATHS asks for
    // the `idle` path: both priorities side by side in one run.
    let wants_idle = only("BENCH_PATHS").is_some_and(|p| p.iter().any(|p| p == "idle"));
    let idle_dir = tempfile::tempdir().unwrap();
    let idle = wants_idle.then(|| {
        assert!(
            !extra.contains("writer_priority"),
            "BENCH_RECORDING sets writer_priority: the idle path would not be idle"
        );
        let recording = recorded_lines(idle_dir.path(), &durability, "idle", &extra);
        start_gateway(&gateway_bin(), idle_dir.path(), &pg, &recording)
    });
    // A fourth gateway, recorded, when BENCH_PATHS names `alt`: PORTCULLIS_ALT_BIN (another
    // build, say the commit before a change) or this one, with BENCH_ALT_RECORDING's
    // `[recording]` lines instead of BENCH_RECORDING's: an A/B inside one run.
    // BENCH_ALT_DIR puts its store on another file system (say a tmpfs, to see what the
    // disk writes cost).
    let wants_alt = only("BENCH_PATHS").is_some_and(|p| p.iter().any(|p| p == "alt"));
    let alt_dir = match std::env::var_os("BENCH_ALT_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let alt = wants_alt.then(|| {
        let alt_extra = std::env::var("BENCH_ALT_RECORDING").unwrap_or_default();
        let bin = std::env::var_os("PORTCULLIS_ALT_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(gateway_bin);
        let recording = recorded_lines(alt_dir.path(), &durability, &priority, &alt_extra);
        start_gateway(&bin, alt_dir.path(), &pg, &recording)
    });
    let token = {
        let out = Command::new(gateway_bin())
            .args(["token", "--config"])
            .arg(dir.path().join("bench.toml"))
            .args(["--subject", "bench", "--groups", "bench", "--ttl", "12h"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let rows_script = dir.path().join("rows10k.sql");
    std::fs::write(
        &rows_script,
        "SELECT * FROM pgbench_accounts LIMIT 10000;\n",
    )
    .unwrap();
    let rows_arg = rows_script.display().to_string();

    let scenarios: Vec<(&str, Vec<&str>)> = vec![
        ("pgbench -S, 1 client", vec!["-S", "-c", "1", "-j", "1"]),
        (
            "pgbench -S, 16 clients / 2 threads",
            vec!["-S", "-c", "16", "-j", "2"],
        ),
        (
            "SELECT 10,000 rows, 1 client",
            vec!["-f", &rows_arg, "-c", "1", "-j", "1"],
        ),
    ];
    let db = pg.database().to_string();
    let mut paths: Vec<(&str, u16, &str, &str, &str)> = vec![
        ("direct", pg.port(), "bencher", PASSWORD, db.as_str()),
        (
            "pgbouncer",
            bouncer.port(),
            "bencher",
            PASSWORD,
            db.as_str(),
        ),
        ("portcullis", gw_port, "bench", token.as_str(), "bench"),
        ("masked", gw_port, "bench", token.as_str(), "bench_masked"),
    ];
    if let Some((_, port)) = &unrecorded {
        paths.push(("unrecorded", *port, "bench", token.as_str(), "bench"));
    }
    if let Some((_, port)) = &idle {
        paths.push(("idle", *port, "bench", token.as_str(), "bench"));
    }
    if let Some((_, port)) = &alt {
        paths.push(("alt", *port, "bench", token.as_str(), "bench"));
    }
    if let Some(keep) = only("BENCH_PATHS") {
        paths.retain(|p| keep.iter().any(|k| k == p.0));
    }
    let scenarios: Vec<(&str, Vec<&str>)> = match only("BENCH_SCENARIOS") {
        Some(keep) => scenarios
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(&(i + 1).to_string()))
            .map(|(_, s)| s)
            .collect(),
        None => scenarios,
    };

    println!(
        "PostgreSQL comparison: {seconds}s per run, {rounds} alternating rounds, median shown; \
         portcullis = recording ({durability}, {priority} writer) + policy; masked = recording + every masking detector"
    );
    for (name, args) in &scenarios {
        let mut results: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for round in 0..rounds {
            // Rotate the order so no path always runs first.
            for i in 0..paths.len() {
                let (label, port, user, pw, dbname) = paths[(i + round) % paths.len()];
                let r = pgbench(port, user, pw, dbname, args, seconds);
                let e = results.entry(label).or_default();
                e.0.push(r.tps);
                e.1.push(r.latency_ms);
            }
        }
        let tps = |l: &str| median(results[l].0.clone());
        let lat = |l: &str| median(results[l].1.clone());
        println!("\n{name}");
        for (label, ..) in &paths {
            println!(
                "  {label:<11} {:>10.0} tps   mean latency {:>8.3} ms",
                tps(label),
                lat(label)
            );
        }
        let all = ["direct", "pgbouncer", "portcullis", "masked"]
            .iter()
            .all(|l| results.contains_key(l));
        if all {
            println!(
                "  ratios: portcullis/direct = {:.2}x, portcullis/pgbouncer = {:.2}x, masked/direct = {:.2}x; \
             added mean latency vs direct = {:.1} us (masked {:.1} us)",
                tps("portcullis") / tps("direct"),
                tps("portcullis") / tps("pgbouncer"),
                tps("masked") / tps("direct"),
                (lat("portcullis") - lat("direct")) * 1000.0,
                (lat("masked") - lat("direct")) * 1000.0
            );
        }
        for (recorded, base) in [
            ("portcullis", "unrecorded"),
            ("idle", "unrecorded"),
            ("alt", "unrecorded"),
            ("portcullis", "alt"),
        ] {
            if !(results.contains_key(base) && results.contains_key(recorded)) {
                continue;
            }
            let ratios: Vec<f64> = results[recorded]
                .0
                .iter()
                .zip(&results[base].0)
                .map(|(a, b)| a / b)
                .collect();
            let pairs: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
            println!("  {recorded}/{base} per round: {}", pairs.join(" "));
            println!(
                "  {recorded}/{base} = {:.3}x (median tps; {:.1}% of the rate), median of the \
                 per-round ratios {:.3}x, added mean latency {:.1} us",
                tps(recorded) / tps(base),
                (1.0 - tps(recorded) / tps(base)) * 100.0,
                median(ratios),
                (lat(recorded) - lat(base)) * 1000.0
            );
        }
    }
}
