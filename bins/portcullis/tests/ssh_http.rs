//! End-to-end: the gateway binary serving SSH and HTTP targets from its configuration,
//! next to PostgreSQL, with the same identity, pipeline and record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use portcullis_testkit::{Sshd, SshdOptions, free_port, generate_keypair};
use support::{Harness, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_and_http_targets_through_the_gateway_binary() {
    // An HTTP upstream that reports the credential it received.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/users/1",
        axum::routing::get(|headers: axum::http::HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            axum::Json(serde_json::json!({ "user": { "email": "jane@example.com", "name": "Jane" }, "injected": auth == "Bearer upstream-api-token" }))
        }),
    ).route(
        "/notes",
        axum::routing::get(|| async {
            "call jane.doe@example.com, card 4111 1111 1111 1111, about the refund\n"
        }),
    );
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    let mut h = tokio::task::spawn_blocking(|| Harness::start(Options::default()))
        .await
        .unwrap();
    let keys = h.dir.path().to_path_buf();
    let gw_key = generate_keypair(&keys, "gateway_id").unwrap();
    let host_key = generate_keypair(&keys, "gateway_host").unwrap();
    let alice = generate_keypair(&keys, "alice").unwrap();
    let sshd = Sshd::start(SshdOptions::default().authorize(gw_key.public_key.clone())).unwrap();
    let (ssh_port, http_port) = (free_port().unwrap(), free_port().unwrap());
    let mut config = std::fs::read_to_string(&h.config).unwrap();
    config += &format!(
        r#"
[ssh]
listen = "127.0.0.1:{ssh_port}"
[ssh.settings]
host_key_file = "{host}"
[[ssh.settings.keys]]
subject = "alice"
groups = ["dba"]
public_key = "{alice_pub}"

[targets.box]
protocol = "ssh"
allowed_groups = ["dba"]
[targets.box.upstream]
address = "127.0.0.1:{sshd_port}"
user = "{sshd_user}"
private_key_file = "{gw_priv}"
host_keys = ["{sshd_host}"]
[targets.box.masking]
enabled = true

[http]
listen = "127.0.0.1:{http_port}"
[[http.routes]]
path_prefix = "/api"
strip_prefix = true
target = "api"
[http.targets.api]
upstream = "http://127.0.0.1:{up_port}"
allowed_groups = ["dba"]
credential = {{ type = "bearer", token = {{ value = "upstream-api-token" }} }}
mask = {{ json = ["**.email"], content = {{ enabled = true }} }}
policy = {{ default = "allow" }}
"#,
        host = host_key.private_key.display(),
        alice_pub = alice.public_key,
        sshd_port = sshd.port(),
        sshd_user = sshd.user(),
        gw_priv = gw_key.private_key.display(),
        sshd_host = sshd.host_public_key(),
    );
    std::fs::write(&h.config, config).unwrap();
    let out = Command::new(support::gateway_bin())
        .args(["check", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = tokio::task::spawn_blocking(move || {
        h.stop("TERM");
        h.spawn_gateway();
        h
    })
    .await
    .unwrap();
    portcullis_testkit::wait_for_tcp(
        format!("127.0.0.1:{ssh_port}").parse().unwrap(),
        std::time::Duration::from_secs(10),
    )
    .unwrap();

    // SSH exec: output masked, exit status passed back.
    let known_hosts = keys.join("known_hosts");
    let out = tokio::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(&alice.private_key)
        .args([
            "-p",
            &ssh_port.to_string(),
            "box@127.0.0.1",
            "echo mail jane@example.com; exit 3",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.logs()
    );
    assert!(
        stdout.contains("mail [EMAIL]") && !stdout.contains("jane@example.com"),
        "{stdout}"
    );

    // HTTP: the caller's token stays at the gateway, the target's is injected, JSON masked.
    let token = h.token("alice", "dba", "10m");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{http_port}/api/users/1"))
        .output()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            h.logs()
        )
    });
    assert_ne!(body["user"]["email"], "jane@example.com", "{body}");
    assert_eq!(body["injected"], true, "{body}");
    // A text body is masked by content, chunk-safely, through the pipeline's masking layer.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{http_port}/api/notes"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("about the refund"), "{text}");
    assert!(!text.contains("jane.doe@example.com"), "{text}");
    assert!(!text.contains("4111 1111 1111 1111"), "{text}");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{http_port}/api/users/1"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    // Both are in the record, next to PostgreSQL sessions.
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let list = h.audit(&["--gateway", &gw, "--token", &auditor, "sessions", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert!(
        list.iter()
            .any(|s| s["target"] == "box" && s["protocol"] == "ssh"),
        "{list:?}"
    );
    assert!(list.iter().any(|s| s["target"] == "api"), "{list:?}");
    drop(sshd);
}
