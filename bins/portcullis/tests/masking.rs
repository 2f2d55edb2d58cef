//! End-to-end: sensitive values are masked however they are reached, in text and
//! binary results, errors, notices and COPY, and the record holds masked values only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Harness, Options, contains, files_under};

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111111111111111";
const SSN_VALUE: &str = "078-05-1120";

fn setup(h: &Harness) {
    h.pg.psql(&format!(
        "CREATE TABLE customers (id int primary key, name text, email text, card text, card_num int8, ssn text, api_secret text, note text);
         INSERT INTO customers VALUES (1, 'Jane', '{EMAIL}', '{CARD}', {CARD}, '{SSN_VALUE}', 'hunter2', 'call {EMAIL} re card {CARD}');
         GRANT ALL ON customers TO gw_scram;"
    ))
    .unwrap();
}

fn assert_clean(text: &str) {
    for secret in [EMAIL, CARD, "hunter2"] {
        assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
    }
}

#[test]
fn psql_results_are_masked_through_every_route() {
    let h = Harness::start(Options::default());
    setup(&h);
    let token = h.token("mia", "developers", "10m");
    let psql = h.psql(&token, "masked");
    let queries = [
        "SELECT * FROM customers",
        "SELECT email AS e, card AS c FROM customers",
        "SELECT lower(email), email || '' FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT array_agg(email), string_agg(card, ',') FROM customers",
        "SELECT note FROM customers",
        "BEGIN; DECLARE c CURSOR FOR SELECT email, card FROM customers; FETCH ALL FROM c; COMMIT",
        "UPDATE customers SET note = note WHERE id = 1 RETURNING email, card",
    ];
    for q in queries {
        let out = psql.run(q).unwrap();
        assert_clean(&out);
        assert!(
            out.contains("[EMAIL]") || out.contains("[CARD]"),
            "{q}: nothing masked?\n{out}"
        );
    }
    // COPY streams carry no column names, so a target with column rules refuses them;
    // a target with content detectors only masks them as a stream.
    for q in [
        "COPY customers TO STDOUT WITH (FORMAT csv)",
        "COPY (SELECT api_secret FROM customers) TO STDOUT",
    ] {
        let e = psql.run(q).unwrap_err().to_string();
        assert!(e.contains("Portcullis refused the output"), "{e}");
        assert_clean(&e);
    }
    assert_eq!(
        psql.run("SELECT 1").unwrap().trim(),
        "1",
        "the session goes on"
    );
    let content = h.psql(&token, "masked_content");
    for q in [
        "COPY (SELECT email, card, note FROM customers) TO STDOUT",
        "COPY customers TO STDOUT WITH (FORMAT csv)",
    ] {
        let out = content.run(q).unwrap();
        assert!(
            !out.contains(EMAIL) && !out.contains(CARD) && out.contains("[EMAIL]"),
            "{q}: {out}"
        );
    }
    let csv = h.dir.path().join("out.csv");
    content
        .run(&format!("\\copy customers TO '{}' CSV", csv.display()))
        .unwrap();
    let exported = std::fs::read_to_string(&csv).unwrap();
    assert!(
        !exported.contains(EMAIL) && exported.contains("[EMAIL]"),
        "{exported}"
    );
    // Column rules mask whole columns by name, whatever they hold.
    let out = psql.run("SELECT ssn, api_secret FROM customers").unwrap();
    assert_eq!(out.trim(), "[REDACTED]|", "ssn redacted, api_secret NULL");
    // Errors and notices that quote data are masked too.
    let e = psql
        .run(&format!("SELECT '{EMAIL}'::int"))
        .unwrap_err()
        .to_string();
    // psql itself echoes the query it sent (LINE 1: ...); the server's message is masked.
    let server_line = e.lines().find(|l| l.contains("ERROR")).unwrap();
    assert!(
        server_line.contains("invalid input syntax") && server_line.contains("[EMAIL]"),
        "{e}"
    );
    assert_clean(server_line);
    let out = std::process::Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(h.pg_port.to_string())
        .args(["-U", "mia", "-d", "masked", "-c"])
        .arg(format!(
            "DO $$ BEGIN RAISE NOTICE 'mail %', '{EMAIL}'; END $$"
        ))
        .env("PGPASSWORD", &token)
        .output()
        .unwrap();
    let notice = String::from_utf8_lossy(&out.stderr);
    assert!(notice.contains("mail [EMAIL]"), "{notice}");
    // The same data through an unmasked target is in clear: the masking is the target's.
    let out = h
        .psql(&token, "app")
        .run("SELECT email FROM customers")
        .unwrap();
    assert!(out.contains(EMAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_are_masked_or_withheld() {
    let h = tokio::task::spawn_blocking(|| {
        let h = Harness::start(Options::default());
        setup(&h);
        h
    })
    .await
    .unwrap();
    let token = h.token("mia", "developers", "10m");
    let client = h.connect(&token, "masked").await;
    // tokio-postgres asks for binary results.
    let row = client
        .query_one(
            "SELECT email, card, card_num, note, ssn FROM customers WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let email: String = row.get(0);
    let card: String = row.get(1);
    let card_num: Option<i64> = row.get(2);
    let note: String = row.get(3);
    let ssn: String = row.get(4);
    assert_eq!(email, "[EMAIL]");
    assert_eq!(card, "[CARD]");
    assert_eq!(
        card_num, None,
        "a card number in an int8 column must not pass in binary"
    );
    assert!(!note.contains(EMAIL) && !note.contains(CARD), "{note}");
    assert_ne!(ssn, SSN_VALUE);
    // Prepared statement executed twice: masked both times.
    let stmt = client.prepare("SELECT email FROM customers").await.unwrap();
    for _ in 0..2 {
        let rows = client.query(&stmt, &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, String>(0), "[EMAIL]");
    }
    // json and arrays in binary.
    let row = client
        .query_one(
            "SELECT row_to_json(c)::text, array_agg(c.email) OVER () FROM customers c",
            &[],
        )
        .await
        .unwrap();
    let json: String = row.get(0);
    assert!(!json.contains(EMAIL) && !json.contains(CARD), "{json}");
    let arr: Option<Vec<String>> = row.get(1);
    assert!(arr.is_none_or(|a| !a.iter().any(|v| v.contains(EMAIL))));
}

#[test]
fn the_record_holds_masked_values_only() {
    let mut h = Harness::start(Options::default());
    setup(&h);
    let token = h.token("mia", "developers", "10m");
    let psql = h.psql(&token, "masked");
    psql.run("SELECT * FROM customers").unwrap();
    // Literals in statements are masked in the record, on any target.
    psql.run(&format!(
        "SELECT count(*) FROM customers WHERE email = '{EMAIL}' OR card = '{CARD}'"
    ))
    .unwrap();
    h.psql(&token, "app")
        .run(&format!(
            "SELECT count(*) FROM customers WHERE email = '{EMAIL}'"
        ))
        .unwrap();
    let _ = psql.run(&format!("SELECT '{EMAIL}'::int"));
    let auditor = h.token("carol", "auditors", "10m");
    let gw = format!("http://127.0.0.1:{}", h.admin_port);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&h.audit(&[
        "--gateway",
        &gw,
        "--token",
        &auditor,
        "sessions",
        "--subject",
        "mia",
        "--json",
    ]))
    .unwrap();
    let mut api_text = String::new();
    for s in &sessions {
        api_text += &h.audit(&[
            "--gateway",
            &gw,
            "--token",
            &auditor,
            "show",
            s["id"].as_str().unwrap(),
            "--json",
        ]);
    }
    assert!(api_text.contains("[EMAIL]"), "{api_text}");
    assert!(
        api_text.contains("\"masked\""),
        "mask counts are recorded: {api_text}"
    );
    assert_clean(&api_text);
    h.stop("TERM");
    for (path, bytes) in files_under(&h.store) {
        for secret in [EMAIL, CARD] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds {secret}",
                path.display()
            );
        }
    }
}
