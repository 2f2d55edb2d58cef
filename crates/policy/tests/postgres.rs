#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The classification agrees with what a real PostgreSQL does: every table whose
//! contents a statement changes is classified as written, and statements classified
//! as not writing change nothing.
//!
//! Needs the PostgreSQL on 127.0.0.1:5432 (trust auth, user `postgres`, database
//! `test`) and its `psql`.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use portcullis_policy::{Kind, classify};

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
const TABLES: [&str; 3] = ["a", "b", "c"];

fn psql(script: &str) -> String {
    let mut child = Command::new(PSQL)
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}\nscript:\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Content hash of each test table, in the current transaction.
fn hash_query() -> String {
    let parts: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "'{t}=' || coalesce((SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x), '-')"
            )
        })
        .collect();
    format!("SELECT 'HASH:' || {};", parts.join(" || ' ' || "))
}

fn hashes(output: &str) -> Vec<String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("HASH:"))
        .expect("hash line");
    line.split(' ').map(str::to_string).collect()
}

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE;", self.0))
        });
    }
}

#[test]
fn writes_seen_by_postgres_are_classified_as_writes() {
    let schema = Schema(format!("pcl_policy_{}", std::process::id()));
    let s = &schema.0;
    psql(&format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}; SET search_path = {s};
         CREATE TABLE a (id int PRIMARY KEY, v int);
         CREATE TABLE b (id int PRIMARY KEY, v int);
         CREATE TABLE c (id int PRIMARY KEY, v int);
         INSERT INTO a SELECT g, g FROM generate_series(1, 5) g;
         INSERT INTO b SELECT g, g * 10 FROM generate_series(1, 5) g;
         INSERT INTO c SELECT g, g * 100 FROM generate_series(1, 5) g;"
    ));
    let baseline = hashes(&psql(&format!("SET search_path = {s};\n{}", hash_query())));

    let cases: &[(&str, &[&str])] = &[
        (
            "WITH d AS (DELETE FROM a RETURNING *) SELECT count(*) FROM d",
            &["a"],
        ),
        ("INSERT INTO a SELECT id + 100, v FROM b", &["a"]),
        (
            "UPDATE a SET v = (SELECT max(v) FROM b) WHERE id = 1",
            &["a"],
        ),
        ("DELETE/**/FROM/**/\"a\"", &["a"]),
        ("UPDATE A SET V = 0", &["a"]),
        (
            "MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE",
            &["a"],
        ),
        ("DELETE FROM a USING b WHERE a.id = b.id", &["a"]),
        ("DELETE FROM ONLY a WHERE id = 1", &["a"]),
        ("SELECT * FROM ONLY a", &[]),
        (
            "INSERT INTO c VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = 5",
            &["c"],
        ),
        (
            "WITH x AS (UPDATE c SET v = v + 1 RETURNING id) INSERT INTO b SELECT id + 100, 0 FROM x",
            &["b", "c"],
        ),
        ("SELECT 1; DELETE FROM c", &["c"]),
        ("TRUNCATE b", &["b"]),
        ("EXPLAIN ANALYZE DELETE FROM a", &["a"]),
        (
            "EXPLAIN (ANALYZE, COSTS off) UPDATE b SET v = 1 WHERE id = 2",
            &["b"],
        ),
        ("DO $$ BEGIN DELETE FROM a; END $$", &["a"]),
        ("SELECT * FROM a FOR UPDATE", &[]),
        ("EXPLAIN DELETE FROM a", &[]),
        ("SELECT * FROM a WHERE id = 1 -- ; DELETE FROM b", &[]),
        ("SELECT $x$; DELETE FROM b; $x$", &[]),
        ("SELECT /* ; TRUNCATE c; */ count(*) FROM c", &[]),
        ("PREPARE p AS DELETE FROM a", &[]),
        ("SELECT * INTO d FROM a", &[]),
        ("COPY (SELECT * FROM a) TO STDOUT", &[]),
    ];

    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let out = psql(&format!(
            "SET search_path = {s};\nBEGIN;\n{sql}\n;\n{}\nROLLBACK;\n",
            hash_query()
        ));
        let after = hashes(&out);
        let changed: BTreeSet<&str> = TABLES
            .iter()
            .zip(baseline.iter().zip(&after))
            .filter(|(_, (before, after))| before != after)
            .map(|(t, _)| *t)
            .collect();
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        if changed != expected {
            failures.push(format!(
                "{sql}: PostgreSQL changed {changed:?}, test expects {expected:?}"
            ));
        }
        let class = classify(sql);
        if class.is_unknown() {
            // Unknown statements are denied; nothing to compare.
            continue;
        }
        let written: BTreeSet<&str> = class
            .tables
            .iter()
            .filter(|t| t.write)
            .map(|t| t.name.as_str())
            .collect();
        if !changed.is_subset(&written) {
            failures.push(format!(
                "{sql}: PostgreSQL changed {changed:?} but the classification writes {written:?}"
            ));
        }
        let writes = class
            .kinds
            .iter()
            .any(|k| matches!(k, Kind::Write | Kind::Ddl | Kind::Admin));
        if !changed.is_empty() && !writes {
            failures.push(format!(
                "{sql}: PostgreSQL changed {changed:?} but the kinds are {:?}",
                class.kinds
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
