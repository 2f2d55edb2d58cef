#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real OpenSSH server: key login with the generated key, refusal of others, stop on drop.

use portcullis_testkit::{Sshd, SshdOptions, generate_keypair, pid_alive};

#[test]
fn sshd_accepts_its_authorized_key_and_refuses_others() {
    let keys = tempfile::tempdir().unwrap();
    let good = generate_keypair(keys.path(), "good").unwrap();
    let bad = generate_keypair(keys.path(), "bad").unwrap();
    assert!(good.public_key.starts_with("ssh-ed25519 "));
    let sshd = Sshd::start(SshdOptions::default().authorize(&good.public_key)).unwrap();
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 "));
    let known = keys.path().join("known_hosts");

    let out = Sshd::client_command(sshd.port(), sshd.user(), &good.private_key, &known)
        .arg("echo hi; exit 7")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(7));
    // The host key the client saw is the one the kit reports.
    let seen = std::fs::read_to_string(&known).unwrap();
    let b64 = sshd.host_public_key().split_whitespace().nth(1).unwrap();
    assert!(seen.contains(b64), "{seen}");

    let out = Sshd::client_command(sshd.port(), sshd.user(), &bad.private_key, &known)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    // Keys added later are honoured.
    sshd.authorize(&bad.public_key).unwrap();
    let out = Sshd::client_command(sshd.port(), sshd.user(), &bad.private_key, &known)
        .arg("true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sshd.log().contains("Accepted publickey"));

    let pid: u32 = std::fs::read_to_string(sshd.dir().join("sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = sshd.dir().to_path_buf();
    drop(sshd);
    assert!(!pid_alive(pid));
    assert!(!dir.exists());
}
