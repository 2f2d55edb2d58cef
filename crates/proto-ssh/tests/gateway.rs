#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gateway in front of the real OpenSSH server, driven by the real OpenSSH client.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Harness, Options, process_running, text};
use portcullis_core::{AuthMethod, Command, EventKind, Side, Verdict};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn results(events: &[portcullis_core::Event]) -> Vec<portcullis_core::Completion> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CommandResult { completion, .. } => Some(completion.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_and_exit_status_pass_through_and_are_recorded() {
    let h = Harness::start(Options::default()).await;
    let out = h.exec("echo hello").await;
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    let out = h.exec("echo out; echo err >&2; exit 3").await;
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"));
    assert_eq!(out.status.code(), Some(3));

    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionClosed { .. }))
        .await;
    let opened = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::SessionOpened {
                identity,
                target,
                protocol,
                details,
                ..
            } => Some((identity.clone(), target.clone(), *protocol, details.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(opened.0.subject, "alice");
    assert_eq!(opened.0.method, AuthMethod::SshKey);
    assert_eq!(opened.1, "box");
    assert_eq!(opened.2, portcullis_core::Protocol::Ssh);
    assert_eq!(opened.3.get("login").map(String::as_str), Some("box"));
    let h2 = h
        .wait_event(|e| {
            matches!(&e.kind, EventKind::CommandResult { completion, .. }
                if completion.tag.as_deref() == Some("exit-status 3"))
        })
        .await;
    let done = results(&h2);
    let three = done
        .iter()
        .find(|c| c.tag.as_deref() == Some("exit-status 3"))
        .unwrap();
    assert_eq!(three.bytes, "out\nerr\n".len() as u64);
    assert!(
        done.iter()
            .any(|c| c.tag.as_deref() == Some("exit-status 0") && c.bytes == 6)
    );
    let commands: Vec<_> = h2
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Command {
                command, decision, ..
            } => Some((command.clone(), decision.verdict)),
            _ => None,
        })
        .collect();
    assert!(commands.contains(&(
        Command::Exec {
            command: "echo hello".into()
        },
        Verdict::Allow
    )));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_exec_never_reaches_the_host() {
    let h = Harness::start(Options::default()).await;
    let victim = h.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let out = h.exec(&format!("rm -rf {}", victim.display())).await;
    assert_eq!(out.status.code(), Some(126));
    let err = text(&out.stderr);
    assert!(
        err.contains("Portcullis: denied by policy rule no-rm-rf"),
        "{err}"
    );
    assert!(victim.exists());
    assert!(!h.sshd.log().contains("rm -rf"));

    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionClosed { .. }))
        .await;
    let denied = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Command { decision, command: Command::Exec { command }, .. }
            if decision.verdict == Verdict::Deny && decision.rule == "no-rm-rf" && command.contains("rm -rf"))
    });
    assert!(denied, "{events:#?}");
    assert!(results(&events).is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_are_masked_across_chunks() {
    let h = Harness::start(Options::default()).await;
    let out = h
        .exec("echo 'mail bob@example.com card 4111 1111 1111 1111'; echo 'err carol@example.org' >&2")
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(stdout, "mail [EMAIL] card **** **** **** 1111\n");
    let stderr: String = text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Warning: Permanently added"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stderr, "err [EMAIL]\n");

    // Many values in a large stream: every one masked, whatever the chunk boundaries.
    let out = h
        .exec("for i in $(seq 1 3000); do echo \"row $i user$i@example.com\"; done")
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 3000);
    assert!(!stdout.contains("@example.com"));
    assert!(stdout.lines().all(|l| l.ends_with(" [EMAIL]")));

    let events = h
        .wait_event(|e| {
            matches!(&e.kind, EventKind::CommandResult { completion, .. }
                if completion.masked.get("email") == Some(&3000))
        })
        .await;
    let first = results(&events)
        .into_iter()
        .find(|c| c.masked.get("card") == Some(&1))
        .unwrap();
    assert_eq!(first.masked.get("email"), Some(&2));
    // The recorded form of the command is masked too.
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Command { command: Command::Exec { command }, .. } if command.contains("mail [EMAIL]"))));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_shell_with_pty_is_recorded_as_asciicast() {
    let h = Harness::start(Options::default()).await;
    let mut child = h
        .ssh("box", &h.alice.private_key)
        .arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).await.unwrap();
        all
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stdin
        .write_all(b"echo hi-$((6*7)) dave@example.net; exit 5\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let output = text(&reader.await.unwrap());
    assert_eq!(status.code(), Some(5), "{output}");
    assert!(output.contains("hi-42 [EMAIL]"), "{output}");
    assert!(!output.contains("dave@example.net"));

    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionClosed { .. }))
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Command { command: Command::Shell { pty: true }, decision, .. } if decision.allows())));
    let done = results(&events);
    let tag = done[0].tag.clone().unwrap();
    assert!(tag.starts_with("exit-status 5 cast="), "{tag}");
    let name = tag
        .split("cast=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let sha = tag.split("sha256=").nth(1).unwrap();
    let bytes = std::fs::read(h.casts.join(name)).unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha);
    let cast = String::from_utf8(bytes).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].as_u64().unwrap() > 0);
    let mut out = String::new();
    let mut input = String::new();
    let mut last = 0.0;
    for line in lines {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = ev[0].as_f64().unwrap();
        assert!(t >= last);
        last = t;
        match ev[1].as_str().unwrap() {
            "o" => out.push_str(ev[2].as_str().unwrap()),
            "i" => input.push_str(ev[2].as_str().unwrap()),
            _ => {}
        }
    }
    assert!(out.contains("hi-42 [EMAIL]"), "{out}");
    assert!(input.contains("exit 5"), "{input}");
    assert!(!cast.contains("dave@example.net"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_refused_and_recorded() {
    let h = Harness::start(Options::default()).await;
    let out = h
        .ssh("box", &h.stranger.private_key)
        .arg("echo no")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionRefused { .. }))
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::SessionRefused { side: Side::Client, reason, .. } if reason.contains("not mapped"))));
    // An unknown target is refused too.
    let out = h
        .ssh("nosuch", &h.alice.private_key)
        .arg("echo no")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    h.wait_event(|e| {
        matches!(&e.kind,
        EventKind::SessionRefused { reason, .. } if reason.contains("\"nosuch\" does not exist"))
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_mismatch_refuses_with_a_clear_message() {
    let h = Harness::start(Options {
        wrong_pin: true,
        ..Default::default()
    })
    .await;
    let out = h.exec("echo never").await;
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains("Portcullis: upstream host key mismatch for target \"box\""),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionRefused { .. }))
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::SessionRefused { side: Side::Upstream, subject: Some(s), .. } if s == "alice")));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::SessionOpened { .. }))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_down_is_reported() {
    let h = Harness::start(Options {
        host_down: true,
        ..Default::default()
    })
    .await;
    let out = h.exec("echo never").await;
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(err.contains("Portcullis: upstream unreachable"), "{err}");
    h.wait_event(|e| {
        matches!(
            &e.kind,
            EventKind::SessionRefused {
                side: Side::Upstream,
                ..
            }
        )
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_transfer_ends_the_remote_command() {
    let h = Harness::start(Options::default()).await;
    let marker = format!("portcullis-marker-{}", std::process::id());
    let mut child = h
        .ssh("box", &h.alice.private_key)
        .arg(format!("yes {marker}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < 4 << 20 {
        let n = stdout.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got += n;
    }
    assert!(process_running(&marker));
    child.kill().await.unwrap();
    drop(stdout);
    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionClosed { .. }))
        .await;
    let done = results(&events);
    assert_eq!(done.len(), 1);
    assert!(done[0].bytes >= 4 << 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(&marker) {
        assert!(Instant::now() < deadline, "remote command still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_and_file_transfer_are_refused() {
    let h = Harness::start(Options::default()).await;
    let local = portcullis_testkit::free_port().unwrap();
    let mut tunnel = h
        .ssh("box", &h.alice.private_key)
        .arg("-N")
        .arg("-L")
        .arg(format!("{local}:127.0.0.1:{}", h.sshd.port()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream = stream.expect("ssh -L did not listen");
    let mut buf = [0u8; 64];
    // The forwarded connection is closed without a byte of the sshd banner.
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", text(&buf[..n]));
    tunnel.start_kill().unwrap();
    let out = tunnel.wait_with_output().await.unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("Portcullis: denied by policy rule forwarding-default"),
        "{err}"
    );

    // scp (exec) and sftp (subsystem) are refused with a message.
    let out = h.exec("scp -f /etc/hostname").await;
    assert_eq!(out.status.code(), Some(126));
    assert!(text(&out.stderr).contains("file transfer (sftp/scp) is not allowed on target box"));
    let out = tokio::process::Command::new("sftp")
        .args([
            "-F",
            "/dev/null",
            "-b",
            "-",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", h.known_hosts().display()))
        .arg("-i")
        .arg(&h.alice.private_key)
        .arg("-P")
        .arg(h.port.to_string())
        .arg("box@127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("file transfer (sftp/scp) is not allowed"),
        "{err}"
    );

    let events = h
        .wait_event(|e| {
            matches!(&e.kind,
            EventKind::Command { decision, .. } if decision.rule == "ssh-file-transfer")
        })
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Command { decision, command: Command::Forward { mode, host, .. }, .. }
            if decision.rule == "forwarding-default" && mode == "direct-tcpip" && host == "127.0.0.1")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_does_not_stall_another() {
    let h = Harness::start(Options::default()).await;
    // A client that stops reading a large output.
    let mut slow = h
        .ssh("box", &h.alice.private_key)
        .arg("head -c 200000000 /dev/zero")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut slow_out = slow.stdout.take().unwrap();
    let mut buf = vec![0u8; 65536];
    let n = slow_out.read(&mut buf).await.unwrap();
    assert!(n > 0);
    // Meanwhile other sessions run at normal speed.
    for i in 0..3 {
        let started = Instant::now();
        let out = h.exec(&format!("echo second-{i}")).await;
        assert_eq!(text(&out.stdout), format!("second-{i}\n"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // The stalled one resumes and completes when read.
    let mut total = n as u64;
    loop {
        let n = slow_out.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert_eq!(total, 200_000_000);
    assert!(slow.wait().await.unwrap().success());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_typed_at_the_prompt_logs_in() {
    let auth = portcullis_identity::Authenticator::from_config(
        &toml::from_str(
            r#"
            [dev_signer]
            issuer = "portcullis-dev"
            audience = "portcullis"
            secret = "a development secret of 32+ bytes"
            "#,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let token = auth
        .mint_dev_token("bob", &["ops".into()], Duration::from_secs(600))
        .unwrap();
    let h = Harness::start(Options {
        verifier: Some(std::sync::Arc::new(auth)),
        ..Default::default()
    })
    .await;
    let login = |secret: &str| {
        let askpass = h.dir.path().join(format!("askpass-{}", secret.len()));
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{secret}'\n")).unwrap();
        std::fs::set_permissions(
            &askpass,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", h.known_hosts().display()))
            .args(["-o", "PreferredAuthentications=keyboard-interactive"])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .arg("-p")
            .arg(h.port.to_string())
            .arg("box@127.0.0.1")
            .arg("echo via-token")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null());
        cmd
    };
    let out = login(token.expose()).output().await.unwrap();
    assert_eq!(text(&out.stdout), "via-token\n", "{}", text(&out.stderr));
    let out = login("not-a-token").output().await.unwrap();
    assert_eq!(out.status.code(), Some(255));
    let events = h
        .wait_event(|e| matches!(e.kind, EventKind::SessionRefused { .. }))
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::SessionOpened { identity, .. } if identity.subject == "bob" && identity.method == AuthMethod::Jwt)));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_from_a_trusted_ca_log_in() {
    let keys = tempfile::tempdir().unwrap();
    let ca = portcullis_testkit::generate_keypair(keys.path(), "ca").unwrap();
    let h = Harness::start(Options {
        user_ca: Some(ca.public_key.clone()),
        ..Default::default()
    })
    .await;
    let sign = |name: &str, principals: &str| {
        let key = portcullis_testkit::generate_keypair(keys.path(), name).unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca.private_key)
            .args([
                "-I",
                &format!("{name}-id"),
                "-n",
                principals,
                "-V",
                "-5m:+1h",
            ])
            .arg(keys.path().join(format!("{name}.pub")))
            .status()
            .unwrap();
        assert!(status.success());
        key
    };
    let carol = sign("carol", "box");
    let out = h
        .ssh("box", &carol.private_key)
        .arg("-o")
        .arg(format!(
            "CertificateFile={}",
            keys.path().join("carol-cert.pub").display()
        ))
        .arg("echo certified")
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "certified\n", "{}", text(&out.stderr));

    let dave = sign("dave", "elsewhere");
    let out = h
        .ssh("box", &dave.private_key)
        .arg("-o")
        .arg(format!(
            "CertificateFile={}",
            keys.path().join("dave-cert.pub").display()
        ))
        .arg("echo no")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    h.wait_event(|e| {
        matches!(&e.kind,
            EventKind::SessionRefused { reason, .. } if reason.contains("principals"))
    })
    .await;

    // A certificate that restricts the command is refused, not trusted without the restriction.
    let key = portcullis_testkit::generate_keypair(keys.path(), "erin").unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.private_key)
        .args([
            "-I",
            "erin-id",
            "-n",
            "box",
            "-V",
            "-5m:+1h",
            "-O",
            "force-command=true",
        ])
        .arg(keys.path().join("erin.pub"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = h
        .ssh("box", &key.private_key)
        .arg("-o")
        .arg(format!(
            "CertificateFile={}",
            keys.path().join("erin-cert.pub").display()
        ))
        .arg("echo no")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let events = h
        .wait_event(|e| {
            matches!(&e.kind,
            EventKind::SessionRefused { reason, .. } if reason.contains("critical options"))
        })
        .await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::SessionOpened { identity, .. }
            if identity.subject == "carol-id" && identity.method == AuthMethod::SshCertificate)));
    h.stop().await;
}

/// Sends `size` bytes through `ssh box cat` while reading the echo; returns the bytes
/// read back, or `None` if the transfer made no progress for 30 s.
async fn cat_through(h: &Harness, size: usize) -> (Option<usize>, std::process::ExitStatus) {
    let mut child = h
        .ssh("box", &h.alice.private_key)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..size / chunk.len() {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut complete = true;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    writer.abort();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("ssh did not exit")
        .unwrap();
    (complete.then_some(total), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_input_and_output_at_once() {
    // Input and its echo at once: the client's input is drained into a buffer while
    // the echo flows back, so neither direction waits on the other.
    let h = Harness::start(Options::default()).await;
    let (got, status) = cat_through(&h, 8 << 20).await;
    assert_eq!(got, Some(8 << 20));
    assert!(status.success());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_accepts_aes128_gcm_gets_it() {
    let h = Harness::start(Options::default()).await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        h.ssh("box", &h.alice.private_key)
            .args(["-v", "-o", "Ciphers=aes128-gcm@openssh.com"])
            .arg("echo hello")
            .output(),
    )
    .await
    .expect("ssh did not finish")
    .unwrap();
    let log = text(&out.stderr);
    assert_eq!(text(&out.stdout), "hello\n", "{log}");
    assert!(
        log.contains("cipher: aes128-gcm@openssh.com"),
        "negotiated another cipher: {log}"
    );
    h.stop().await;
}
