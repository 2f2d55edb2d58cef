//! End-to-end: an interactive `ssh -tt` shell through the gateway binary to a real sshd
//! is recorded as an asciicast file; `portcullis-audit replay` shows the transcript,
//! checks the file against the SHA-256 pinned in the record and writes it out; `export`
//! carries it into the bundle, `verify` checks it; a changed file is caught everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_testkit::{Process, Sshd, SshdOptions, free_port, generate_keypair, wait_for_tcp};

fn audit(args: &[&str]) -> Output {
    Command::new(support::audit_bin())
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Gateway {
    process: Process,
    port: u16,
    store: PathBuf,
    casts: PathBuf,
    log: PathBuf,
}

fn start_gateway(dir: &Path, sshd: &Sshd, client_pub: &str) -> Gateway {
    let gw_key = generate_keypair(dir, "gateway_id").unwrap();
    let host_key = generate_keypair(dir, "gateway_host").unwrap();
    sshd.authorize(&gw_key.public_key).unwrap();
    let port = free_port().unwrap();
    let store = dir.join("recording");
    let casts = dir.join("casts");
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[recording]
path = "{store}"
durability = "batched"
flush_interval = "50ms"

[identity.dev_signer]
issuer = "portcullis-test"
audience = "portcullis"
secret = "test-signing-secret-0123456789abcdef"

[ssh]
listen = "127.0.0.1:{port}"
[ssh.settings]
host_key_file = "{host_key}"
recordings_dir = "{casts}"
[[ssh.settings.keys]]
subject = "alice"
groups = ["ops"]
public_key = "{client_pub}"

[targets.box]
protocol = "ssh"
allowed_groups = ["ops"]
[targets.box.upstream]
address = "127.0.0.1:{up}"
user = "{user}"
private_key_file = "{gw_key}"
host_keys = ["{pin}"]
"#,
            store = store.display(),
            host_key = host_key.private_key.display(),
            casts = casts.display(),
            up = sshd.port(),
            user = sshd.user(),
            gw_key = gw_key.private_key.display(),
            pin = sshd.host_public_key(),
        ),
    )
    .unwrap();
    let log = dir.join("gateway.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let process = Process::spawn(
        "portcullis",
        Command::new(support::gateway_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file),
    )
    .unwrap();
    wait_for_tcp(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(30),
    )
    .unwrap();
    Gateway {
        process,
        port,
        store,
        casts,
        log,
    }
}

#[test]
fn recorded_pty_session_replays_and_a_changed_cast_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let alice = generate_keypair(dir.path(), "alice").unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let mut gw = start_gateway(dir.path(), &sshd, &alice.public_key);

    // An interactive shell on a PTY, typed into from a pipe: the shell computes the
    // marker, so its output differs from the typed line.
    let mut ssh = Sshd::client_command(
        gw.port,
        "box",
        &alice.private_key,
        &dir.path().join("known_hosts"),
    );
    let mut child = ssh
        .arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo cast-marker-$((6*7))\nexit 7\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = || std::fs::read_to_string(&gw.log).unwrap_or_default();
    assert_eq!(out.status.code(), Some(7), "{}\n{}", text(&out), logs());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cast-marker-42"),
        "{}",
        text(&out)
    );
    // The store is read by a stopped gateway's tools.
    gw.process.stop("TERM", Duration::from_secs(15)).unwrap();

    let store = gw.store.display().to_string();
    let casts = gw.casts.display().to_string();
    let list = audit(&["--store", &store, "sessions", "--json"]);
    assert!(list.status.success(), "{}", text(&list));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let session = list
        .iter()
        .find(|s| s["target"] == "box")
        .unwrap_or_else(|| panic!("no box session in {list:?}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let files: Vec<PathBuf> = std::fs::read_dir(&gw.casts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let cast_file = files[0].clone();
    let cast_name = cast_file.file_name().unwrap().to_str().unwrap().to_string();

    // Transcript without the recordings: the pin is shown, not checked.
    let out = audit(&["--store", &store, "replay", &session]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for needle in [
        "alice -> box (Ssh)",
        "shell (pty)",
        "exit-status 7",
        &cast_name,
        "not checked",
        "session closed",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing in {shown}");
    }

    // With the recordings: checked, and written out byte for byte.
    let written = dir.path().join("replayed.cast");
    let out = audit(&[
        "--store",
        &store,
        "--recordings",
        &casts,
        "replay",
        &session,
        "--cast",
        written.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("matches the record"), "{shown}");
    let original = std::fs::read(&cast_file).unwrap();
    assert_eq!(std::fs::read(&written).unwrap(), original);
    let cast = String::from_utf8(original.clone()).unwrap();
    let mut lines = cast
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let header = lines.next().unwrap();
    assert_eq!(header["version"], 2, "{cast}");
    assert!(
        header["title"].as_str().unwrap().contains("box"),
        "{header}"
    );
    let events: Vec<serde_json::Value> = lines.collect();
    let stream = |code: &str| -> String {
        events
            .iter()
            .filter(|e| e[1] == code)
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect()
    };
    assert!(stream("o").contains("cast-marker-42"), "{cast}");
    assert!(stream("i").contains("exit 7"), "{cast}");

    // `--cast -`: the cast on stdout, the transcript on stderr.
    let out = audit(&[
        "--store",
        &store,
        "--recordings",
        &casts,
        "replay",
        &session,
        "--cast",
        "-",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, original);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shell (pty)"));

    // The bundle carries the cast; verify checks it.
    let bundle = dir.path().join("bundle");
    let bundle_s = bundle.display().to_string();
    let out = audit(&[
        "--store",
        &store,
        "--recordings",
        &casts,
        "export",
        "--out",
        &bundle_s,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(bundle.join("casts").join(&cast_name)).unwrap(),
        original
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(bundle.join("casts.json")).unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], cast_name.as_str());
    let out = audit(&["--bundle", &bundle_s, "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("terminal recordings: 1 match"),
        "{}",
        text(&out)
    );
    let out = audit(&["--bundle", &bundle_s, "replay", &session]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("matches the record"),
        "{}",
        text(&out)
    );

    // Add a forged output line, in the recordings directory and in the bundle.
    let tampered = format!("{cast}[0.5, \"o\", \"forged\\r\\n\"]\n");
    std::fs::write(&cast_file, &tampered).unwrap();
    let written2 = dir.path().join("tampered-out.cast");
    let out = audit(&[
        "--store",
        &store,
        "--recordings",
        &casts,
        "replay",
        &session,
        "--cast",
        written2.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("SHA-256 mismatch"), "{shown}");
    assert!(shown.contains(&cast_name), "{shown}");
    assert!(!written2.exists());
    let out = audit(&["--store", &store, "--recordings", &casts, "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("SHA-256 mismatch"), "{}", text(&out));

    std::fs::write(bundle.join("casts").join(&cast_name), &tampered).unwrap();
    let out = audit(&["--bundle", &bundle_s, "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("SHA-256 mismatch"), "{}", text(&out));
    drop(sshd);
}
