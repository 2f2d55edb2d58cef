//! Classification and decision cost per statement, with the cache cold and warm.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_core::{AuthMethod, Identity};
use portcullis_policy::{CompiledPolicy, PolicyConfig, classify};

const POLICY: &str = r#"
default = "deny"

[[rules]]
id = "no-danger"
dangerous_functions = true
action = "deny"

[[rules]]
id = "no-unbounded-dml"
no_where = true
action = "deny"

[[rules]]
id = "no-secrets"
tables = ["vault.*", "*.credentials"]
action = "deny"

[[rules]]
id = "app-oltp"
groups = ["app"]
kinds = ["read", "write", "transaction"]
tables = ["public.pgbench_*", "public.orders", "public.customers", "public.items"]
action = "allow"

[[rules]]
id = "ddl-review"
kinds = ["ddl"]
action = "review"
approvers = ["dba"]
"#;

/// Typical OLTP statements; `{}` is replaced to make the text distinct (cold cache).
const STATEMENTS: &[(&str, &str)] = &[
    (
        "select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1 /* {} */",
    ),
    (
        "update",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2 /* {} */",
    ),
    (
        "insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP) /* {} */",
    ),
    (
        "join3",
        "SELECT o.id, c.name, sum(i.price * i.qty) FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN items i ON i.order_id = o.id WHERE o.created_at > $1 AND c.region = $2 \
         GROUP BY o.id, c.name ORDER BY o.id DESC LIMIT 50 /* {} */",
    ),
];

fn bench(c: &mut Criterion) {
    let policy = CompiledPolicy::compile(&PolicyConfig::from_toml(POLICY).unwrap()).unwrap();
    let app = Identity {
        subject: "svc".into(),
        groups: vec!["app".into()],
        method: AuthMethod::ApiKey,
        issuer: None,
        expires_at: None,
    };
    // Sanity: every statement is allowed by the OLTP rule.
    for (_, sql) in STATEMENTS {
        let (_, d) = policy.decide(&app, &sql.replace("{}", "0"));
        assert_eq!(d.rule, "app-oltp", "{sql}: {}", d.reason);
    }

    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("decide");
    for (name, sql) in STATEMENTS {
        group.bench_function(format!("{name}/cold"), |b| {
            b.iter_batched(
                || sql.replace("{}", &counter.fetch_add(1, Ordering::Relaxed).to_string()),
                |text| black_box(policy.decide_shared(&app, &text)),
                criterion::BatchSize::SmallInput,
            )
        });
        let warm = sql.replace("{}", "warm");
        group.bench_function(format!("{name}/warm"), |b| {
            b.iter(|| black_box(policy.decide_shared(&app, black_box(&warm))))
        });
        group.bench_function(format!("{name}/classify-only"), |b| {
            b.iter(|| black_box(classify(black_box(&warm))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
