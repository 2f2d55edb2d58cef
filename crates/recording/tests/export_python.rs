#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The hash is reproducible outside Portcullis: the Python snippet of
//! docs/recording.md recomputes every hash of an exported chain.

mod common;

use std::process::Command;

use common::*;
use portcullis_core::SessionId;
use portcullis_recording::{EventStore, SledStore};

fn doc_snippet() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/recording.md"
    ))
    .unwrap();
    let start = doc
        .find("```python\n")
        .expect("python block in docs/recording.md")
        + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

fn run_python(script: &std::path::Path, export: &std::path::Path) -> std::process::Output {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .arg(script)
        .arg(export)
        .output()
        .unwrap_or_else(|e| panic!("{python} is needed for this test (set PYTHON): {e}"))
}

#[test]
fn python_snippet_recomputes_every_hash_of_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let (a, b) = (SessionId::new(), SessionId::new());
    store
        .append(&[opened(a, 1_700_000_000_000_000, "ünïcødé 😀", "orders")])
        .unwrap();
    store
        .append(&[
            command(
                a,
                1_700_000_000_000_001,
                1,
                "SELECT '\"\\\n\t\u{0}\u{8}\u{c}\u{1f}\u{7f}\u{2028}' -- é 😀 </script>",
                true,
            ),
            result(a, 1_700_000_000_000_002, 1),
            refused(b, -1, "mallory"),
            command(a, 1_700_000_000_000_003, 2, "DROP TABLE t", false),
        ])
        .unwrap();
    // A command record holding its result (as batched recording writes them).
    let mut folded = command(a, 1_700_000_000_000_005, 3, "SELECT 'é'", true);
    assert!(
        folded
            .fold_result(result(a, 1_700_000_000_000_006, 3))
            .is_none()
    );
    store
        .append(&[folded, closed(a, 1_700_000_000_000_007, 3)])
        .unwrap();
    let lines: Vec<String> = store
        .scan(1, usize::MAX)
        .unwrap()
        .map(|r| r.unwrap().to_json_line())
        .collect();
    let export = dir.path().join("export.jsonl");
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let script = dir.path().join("verify.py");
    std::fs::write(&script, doc_snippet()).unwrap();

    let out = run_python(&script, &export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = store.head().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ok 7 {}", head.hash)
    );

    // An edited export fails the check.
    let tampered = lines.join("\n").replace("DROP TABLE t", "SELECT 1") + "\n";
    std::fs::write(&export, tampered).unwrap();
    let out = run_python(&script, &export);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad hash at seq 5"));
}
