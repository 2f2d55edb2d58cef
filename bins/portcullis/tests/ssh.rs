//! End-to-end: SSH command policy, approvals of shells, file transfer records and
//! forwarding, with the gateway binary, the real sshd and the real ssh/scp/sftp clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{SshKeyPair, Sshd, SshdOptions, free_port, generate_keypair};
use support::{Harness, Options, gateway_bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ssh {
    h: Harness,
    _sshd: Sshd,
    alice: SshKeyPair,
    port: u16,
    known_hosts: PathBuf,
    /// Where files are put on the host (the same machine).
    remote: PathBuf,
    /// Local files.
    local: PathBuf,
}

impl Ssh {
    fn start(echo_port: u16) -> Ssh {
        let mut h = Harness::start(Options::default());
        let keys = h.dir.path().to_path_buf();
        let gw_key = generate_keypair(&keys, "gateway_id").unwrap();
        let host_key = generate_keypair(&keys, "gateway_host").unwrap();
        let alice = generate_keypair(&keys, "alice").unwrap();
        let sshd =
            Sshd::start(SshdOptions::default().authorize(gw_key.public_key.clone())).unwrap();
        let port = free_port().unwrap();
        let remote = keys.join("remote");
        let local = keys.join("local");
        std::fs::create_dir_all(&remote).unwrap();
        std::fs::create_dir_all(&local).unwrap();
        let mut config = std::fs::read_to_string(&h.config).unwrap();
        config += &format!(
            r#"
[ssh]
listen = "127.0.0.1:{port}"
[ssh.settings]
host_key_file = "{host}"
[[ssh.settings.keys]]
subject = "alice"
groups = ["ops"]
public_key = "{alice_pub}"

[targets.box]
protocol = "ssh"
allowed_groups = ["ops"]
[targets.box.upstream]
address = "127.0.0.1:{sshd_port}"
user = "{sshd_user}"
private_key_file = "{gw_priv}"
host_keys = ["{sshd_host}"]
allow_file_transfer = true
[targets.box.policy]
default = "deny"
[[targets.box.policy.ssh_rules]]
id = "no-rm"
programs = ["rm", "/bin/rm", "/usr/bin/rm"]
action = "deny"
reason = "deletions go through change management"
[[targets.box.policy.ssh_rules]]
id = "status"
commands = ["echo status *", "cat /etc/hostname"]
action = "allow"
[[targets.box.policy.ssh_rules]]
id = "shells"
shell = true
action = "review"
approvers = ["leads"]
[[targets.box.policy.ssh_rules]]
id = "transfers"
file_transfer = ["any"]
action = "allow"
[[targets.box.policy.ssh_rules]]
id = "echo-tunnel"
groups = ["ops"]
forward = ["127.0.0.1:{echo_port}"]
action = "allow"
"#,
            host = host_key.private_key.display(),
            alice_pub = alice.public_key,
            sshd_port = sshd.port(),
            sshd_user = sshd.user(),
            gw_priv = gw_key.private_key.display(),
            sshd_host = sshd.host_public_key(),
        );
        std::fs::write(&h.config, config).unwrap();
        let out = Command::new(gateway_bin())
            .args(["check", "--config"])
            .arg(&h.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        h.stop("TERM");
        h.spawn_gateway();
        portcullis_testkit::wait_for_tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(20),
        )
        .unwrap();
        Ssh {
            known_hosts: keys.join("known_hosts"),
            h,
            _sshd: sshd,
            alice,
            port,
            remote,
            local,
        }
    }

    /// Options shared by ssh, scp and sftp.
    fn options(&self, cmd: &mut Command) {
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.alice.private_key);
    }

    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        self.options(&mut cmd);
        cmd.args(["-p", &self.port.to_string()]);
        cmd
    }

    fn exec(&self, line: &str) -> Output {
        self.ssh().args(["box@127.0.0.1", line]).output().unwrap()
    }

    fn scp(&self, extra: &[&str], from: &str, to: &str) -> Output {
        let mut cmd = Command::new("scp");
        self.options(&mut cmd);
        cmd.args(["-P", &self.port.to_string()])
            .args(extra)
            .args([from, to])
            .output()
            .unwrap()
    }

    fn remote(&self, name: &str) -> String {
        self.remote.join(name).display().to_string()
    }

    fn local(&self, name: &str) -> String {
        self.local.join(name).display().to_string()
    }

    /// Every recorded event of alice's sessions on `box`, as JSON (`type` at top level).
    fn events(&self) -> Vec<serde_json::Value> {
        let auditor = self.h.token("carol", "auditors", "10m");
        let gw = format!("http://127.0.0.1:{}", self.h.admin_port);
        let sessions: Vec<serde_json::Value> = serde_json::from_str(&self.h.audit(&[
            "--gateway",
            &gw,
            "--token",
            &auditor,
            "sessions",
            "--subject",
            "alice",
            "--json",
        ]))
        .unwrap();
        let mut out = Vec::new();
        for s in sessions {
            let sid = s["id"].as_str().unwrap();
            for line in self
                .h
                .audit(&["--gateway", &gw, "--token", &auditor, "show", sid, "--json"])
                .lines()
            {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let e = if v.get("event").is_some() {
                    v["event"].clone()
                } else {
                    v
                };
                // A command recorded with its result reads as the command, then the result.
                match serde_json::from_value::<portcullis_core::Event>(e.clone()) {
                    Ok(event) => {
                        let (event, result) = event.split_result();
                        out.push(serde_json::to_value(event).unwrap());
                        out.extend(result.map(|r| serde_json::to_value(r).unwrap()));
                    }
                    Err(_) => out.push(e),
                }
            }
        }
        out
    }

    /// Waits until some recorded event satisfies `pred`; returns it.
    fn wait_event(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events();
            if let Some(e) = events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no event: {what}\n{}",
                events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn file_op(&self, op: &str, path: &str) -> serde_json::Value {
        self.wait_event(&format!("file_operation {op} {path}"), |e| {
            e["type"] == "file_operation" && e["op"] == op && e["path"] == path
        })
    }

    fn approvals(&self, token: &str, args: &[&str]) -> Output {
        Command::new(gateway_bin())
            .args([
                "approvals",
                "--gateway",
                &format!("http://127.0.0.1:{}", self.h.admin_port),
                "--token",
                token,
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits for a pending request whose command mentions `needle`; returns its id.
    fn wait_for_request(&self, approver: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.approvals(approver, &["list"]);
            assert!(out.status.success(), "{out:?}");
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(r) = list
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["command"].to_string().contains(needle))
            {
                return r["id"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no request for {needle}: {list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_file(path: &Path, size: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// A TCP server that echoes each connection until EOF.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_rules_shell_approval_transfers_and_forwarding() {
    let echo_port = echo_server().await;
    let s = tokio::task::spawn_blocking(move || Ssh::start(echo_port))
        .await
        .unwrap();
    let s = std::sync::Arc::new(s);

    // --- exec: allowed by a command rule, denied by default and by a deny rule.
    let t = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = &*t;
        let out = s.exec("echo status green");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            text(&out.stderr),
            s.h.logs()
        );
        assert_eq!(text(&out.stdout).trim(), "status green");

        // The `;` bypass: the allow rule does not cover the second command, nothing runs.
        let marker = s.remote("pwned");
        let out = s.exec(&format!("echo status x; touch {marker}"));
        assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("denied by policy rule default"),
            "{}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).is_empty());
        let out = s.exec(&format!("echo status $(touch {marker})"));
        assert_eq!(out.status.code(), Some(126));
        assert!(
            !Path::new(&marker).exists(),
            "the host ran a denied command"
        );

        // The deny rule names itself, also when `rm` hides behind `&&`.
        let victim = s.remote("keep.txt");
        std::fs::write(&victim, "keep").unwrap();
        let out = s.exec(&format!("echo status ok && rm {victim}"));
        assert_eq!(out.status.code(), Some(126));
        assert!(
            text(&out.stderr)
                .contains("denied by policy rule no-rm: deletions go through change management"),
            "{}",
            text(&out.stderr)
        );
        assert!(Path::new(&victim).exists());

        // policy explain shows the same.
        let out = Command::new(gateway_bin())
            .args(["policy", "explain", "--config"])
            .arg(&s.h.config)
            .args([
                "--target",
                "box",
                "--groups",
                "ops",
                "--exec",
                "echo status x; rm -rf /",
            ])
            .output()
            .unwrap();
        let explained = text(&out.stdout);
        assert!(
            explained.contains("shell syntax: ;")
                && explained.contains("decision: deny by `no-rm`"),
            "{explained}{}",
            text(&out.stderr)
        );
        s.wait_event("denied `;` exec", |e| {
            e["type"] == "command"
                && e["decision"]["verdict"] == "deny"
                && e["command"]["command"]
                    .as_str()
                    .is_some_and(|c| c.contains("; touch"))
        });
    })
    .await
    .unwrap();

    // --- shell: parked for approval; approved runs, rejected does not.
    let t = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = &*t;
        let lead = s.h.token("lena", "leads", "10m");
        let mut child = s
            .ssh()
            .args(["-T", "box@127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"echo shell-$((6*7))\nexit 0\n").unwrap();
        }
        let id = s.wait_for_request(&lead, "shell");
        let out = s.approvals(&lead, &["approve", &id, "-j", "maintenance OPS-7"]);
        assert!(out.status.success(), "{out:?}");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("shell-42"),
            "{}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).contains(&id), "{}", text(&out.stderr));

        let child = s
            .ssh()
            .args(["-T", "box@127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let id2 = loop {
            let id2 = s.wait_for_request(&lead, "shell");
            if id2 != id {
                break id2;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = s.approvals(&lead, &["reject", &id2, "-j", "not now"]);
        assert!(out.status.success(), "{out:?}");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("denied by policy rule shells: rejected by lena: not now"),
            "{}",
            text(&out.stderr)
        );
    })
    .await
    .unwrap();

    // --- file transfer: scp (sftp mode and -O legacy) both ways, sftp batch.
    let t = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = &*t;
        let up = s.local("up.bin");
        let data = write_file(Path::new(&up), 300_000);
        let size = data.len() as u64;

        // scp over sftp (the OpenSSH default).
        let dest = s.remote("sftp-up.bin");
        let out = s.scp(&[], &up, &format!("box@127.0.0.1:{dest}"));
        assert!(out.status.success(), "{}\n{}", text(&out.stderr), s.h.logs());
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let e = s.file_op("write", &dest);
        assert_eq!((e["bytes"].as_u64(), e["direction"].as_str()), (Some(size), Some("upload")), "{e}");
        assert_eq!(e["protocol"], "sftp");
        let back = s.local("sftp-down.bin");
        let out = s.scp(&[], &format!("box@127.0.0.1:{dest}"), &back);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&back).unwrap(), data);
        let e = s.file_op("read", &dest);
        assert_eq!((e["bytes"].as_u64(), e["direction"].as_str()), (Some(size), Some("download")), "{e}");

        // Legacy scp protocol.
        let dest = s.remote("legacy-up.bin");
        let out = s.scp(&["-O"], &up, &format!("box@127.0.0.1:{dest}"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let e = s.file_op("upload", &dest);
        assert_eq!((e["bytes"].as_u64(), e["size"].as_u64()), (Some(size), Some(size)), "{e}");
        assert_eq!(e["protocol"], "scp");
        let back = s.local("legacy-down.bin");
        let out = s.scp(&["-O"], &format!("box@127.0.0.1:{dest}"), &back);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&back).unwrap(), data);
        let e = s.file_op("download", &dest);
        assert_eq!(e["bytes"].as_u64(), Some(size), "{e}");
        s.wait_event("scp -t recorded as an upload", |e| {
            e["type"] == "command"
                && e["command"]["kind"] == "file_transfer"
                && e["command"]["protocol"] == "scp"
                && e["command"]["direction"] == "upload"
                && e["decision"]["rule"] == "transfers"
        });

        // sftp batch: mkdir, put, rename, get, rm, rmdir.
        let dir = s.remote("batch");
        let batch = s.local("batch.txt");
        let got = s.local("batch-got.bin");
        std::fs::write(
            &batch,
            format!(
                "mkdir {dir}\nput {up} {dir}/a.bin\nrename {dir}/a.bin {dir}/b.bin\nget {dir}/b.bin {got}\nrm {dir}/b.bin\nrmdir {dir}\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("sftp");
        s.options(&mut cmd);
        let out = cmd
            .args(["-P", &s.port.to_string(), "-b", &batch, "box@127.0.0.1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", text(&out.stderr), s.h.logs());
        assert_eq!(std::fs::read(&got).unwrap(), data);
        assert!(!Path::new(&dir).exists());
        s.file_op("mkdir", &dir);
        let e = s.file_op("write", &format!("{dir}/a.bin"));
        assert_eq!(e["bytes"].as_u64(), Some(size), "{e}");
        let e = s.file_op("rename", &format!("{dir}/a.bin"));
        assert_eq!(e["to"].as_str(), Some(format!("{dir}/b.bin").as_str()), "{e}");
        let e = s.file_op("read", &format!("{dir}/b.bin"));
        assert_eq!(e["bytes"].as_u64(), Some(size), "{e}");
        s.file_op("remove", &format!("{dir}/b.bin"));
        s.file_op("rmdir", &dir);
    })
    .await
    .unwrap();

    // --- client disconnect in the middle of a transfer (a rate-limited upload).
    let t = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = &*t;
        let big = s.local("big.bin");
        let size = write_file(Path::new(&big), 8 << 20).len() as u64;
        let part = s.remote("big-part.bin");
        let mut cmd = Command::new("scp");
        s.options(&mut cmd);
        let mut child = cmd
            .args(["-O", "-l", "2000", "-P", &s.port.to_string()])
            .arg(&big)
            .arg(format!("box@127.0.0.1:{part}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the upload did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Cut the connection: kill scp's ssh process (killing scp alone lets ssh send EOF).
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children", pid = child.id()))
                .unwrap_or_default();
        for pid in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        child.kill().unwrap();
        let _ = child.wait();
        let e = s.wait_event("interrupted upload", |e| {
            e["type"] == "file_operation" && e["path"] == part.as_str() && e["error"].is_string()
        });
        let bytes = e["bytes"].as_u64().unwrap();
        assert!(bytes > 0 && bytes < size, "{e}");
        assert_eq!(e["size"].as_u64(), Some(size));
        let error = e["error"].as_str().unwrap();
        assert!(
            error.contains("client disconnected") && error.contains(&format!("of {size} bytes")),
            "{e}"
        );
        std::fs::remove_file(&big).unwrap();
        let _ = std::fs::remove_file(&part);
    })
    .await
    .unwrap();

    // --- forwarding: allowed destination relays and is recorded; others are refused.
    let t = s.clone();
    tokio::task::spawn_blocking(move || {
        let s = &*t;
        let mut child = s
            .ssh()
            .args(["-W", &format!("127.0.0.1:{echo_port}"), "box@127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"hello through the tunnel\n").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            text(&out.stdout),
            "hello through the tunnel\n",
            "{}\n{}",
            text(&out.stderr),
            s.h.logs()
        );
        let e = s.wait_event("forward result", |e| {
            e["type"] == "command_result"
                && e["completion"]["tag"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("forwarded 127.0.0.1:{echo_port}")))
        });
        assert_eq!(
            e["completion"]["tag"],
            format!("forwarded 127.0.0.1:{echo_port} sent 25 received 25"),
            "{e}"
        );
        assert!(e["duration_us"].as_u64().unwrap() > 0);
        s.wait_event("forward allowed", |e| {
            e["type"] == "command"
                && e["command"]["kind"] == "forward"
                && e["command"]["port"] == echo_port
                && e["decision"]["rule"] == "echo-tunnel"
        });

        // Any other destination: denied by default, recorded.
        let other = free_port().unwrap();
        let out = s
            .ssh()
            .args(["-W", &format!("127.0.0.1:{other}"), "box@127.0.0.1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("denied by policy rule forwarding-default"),
            "{}",
            text(&out.stderr)
        );
        s.wait_event("forward denied", |e| {
            e["type"] == "command"
                && e["command"]["kind"] == "forward"
                && e["command"]["port"] == other
                && e["decision"]["verdict"] == "deny"
        });
    })
    .await
    .unwrap();

    // -L works the same way, through a local listener of the client.
    let local = free_port().unwrap();
    let mut tunnel = tokio::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
        .arg("-i")
        .arg(&s.alice.private_key)
        .args(["-p", &s.port.to_string(), "-N", "-L"])
        .arg(format!("{local}:127.0.0.1:{echo_port}"))
        .arg("box@127.0.0.1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            break c;
        }
        assert!(Instant::now() < deadline, "ssh -L did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"ping");
    tunnel.start_kill().unwrap();
    let _ = tunnel.wait().await;
}
