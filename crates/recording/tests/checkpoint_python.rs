#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The checkpoint signature is reproducible outside Portcullis: the Python
//! script of docs/evidence.md verifies every checkpoint of an exported bundle
//! and rejects a changed one.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_core::SessionId;
use portcullis_recording::{
    CheckpointPolicy, Durability, EventStore, ExportOptions, Recorder, RecorderOptions, SigningKey,
    SledStore, export,
};

fn doc_script() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/evidence.md"
    ))
    .unwrap();
    let start = doc
        .find("```python\n")
        .expect("python block in docs/evidence.md")
        + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test]
async fn python_script_verifies_checkpoint_signatures() {
    let has_crypto = Command::new(python())
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_crypto,
        "{} with the `cryptography` package is needed for this test (set PYTHON)",
        python()
    );
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let pem = dir.path().join("gateway.pub.pem");
    std::fs::write(&pem, key.public_key().to_pem()).unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SledStore::open(dir.path().join("s")).unwrap());
    let rec = Recorder::start_signed(
        store.clone(),
        RecorderOptions {
            durability: Durability::Strict,
            flush_interval: Duration::from_millis(50),
            flush_events: 100,
            queue_capacity: 16,
            writer_priority: portcullis_recording::WriterPriority::Normal,
        },
        key,
        CheckpointPolicy {
            events: 2,
            interval: Duration::from_secs(60),
        },
    )
    .unwrap();
    let s = SessionId::new();
    rec.record(opened(s, 1, "ünï", "orders")).await.unwrap();
    rec.record(command(s, 2, 1, "SELECT 1", true))
        .await
        .unwrap();
    rec.record(result(s, 3, 1)).await.unwrap();
    rec.record(closed(s, 4, 1)).await.unwrap();
    rec.shutdown().await.unwrap();
    let out = dir.path().join("bundle");
    export(store.as_ref(), None, &ExportOptions::default(), &out).unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, doc_script()).unwrap();
    let cps = out.join("checkpoints.jsonl");
    let run = || {
        Command::new(python())
            .arg(&script)
            .arg(&pem)
            .arg(&cps)
            .output()
            .unwrap()
    };
    let o = run();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
    let n: usize = stdout.trim()[3..].parse().unwrap();
    assert!(n >= 2, "{stdout}");

    // One changed seq makes the script fail.
    let text = std::fs::read_to_string(&cps).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    v["seq"] = serde_json::json!(v["seq"].as_u64().unwrap() + 1);
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&cps, format!("{v}\n{}\n", rest.join("\n"))).unwrap();
    let o = run();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("InvalidSignature"));
}
