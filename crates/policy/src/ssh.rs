//! Rules for SSH requests: exec command lines, shells, file transfer and forwarding.
//!
//! ```toml
//! [[ssh_rules]]
//! id = "status"
//! commands = ["systemctl status *", "journalctl -u * **"]
//! action = "allow"
//!
//! [[ssh_rules]]
//! id = "shells"
//! shell = true
//! action = "review"
//! approvers = ["leads"]
//!
//! [[ssh_rules]]
//! id = "tunnel-to-db"
//! groups = ["dba"]
//! forward = ["db.internal:5432"]
//! action = "allow"
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;

use portcullis_core::{Command, Decision, Identity, Quorum, ReviewRequirement, Verdict};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::cmdline::{CommandLine, SimpleCommand, parse_command_line};
use crate::config::{DefaultAction, QuorumConfig};
use crate::rules::{Glob, RULE_DEFAULT};

/// Rule id of decisions on exec command lines that cannot be read (unterminated quotes).
pub const RULE_UNPARSABLE: &str = "unparsable-command";
pub use portcullis_core::RULE_FORWARDING_DEFAULT;

/// One SSH rule as written. Exactly one kind of request is matched, chosen by the
/// matchers present: `commands` / `programs` (exec), `shell`, `file_transfer`,
/// `forward` (direct-tcpip), `remote_forward` (tcpip-forward) or `agent`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshRuleConfig {
    /// Unique identifier (shared namespace with the SQL `rules`), reported in decisions.
    pub id: String,
    /// The caller is in any of these groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Command-line patterns, word by word: `*` and `?` match inside one word, a
    /// word `**` matches any number of words (`systemctl status *`, `ls **`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    /// Globs on the program (`argv[0]`): a glob without `/` matches only a program
    /// named without a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs: Option<Vec<String>>,
    /// Allow and review rules: `true` also matches command lines with shell syntax
    /// (`;`, `&&`, `|`, `$(`, backticks, redirections, `$VAR`), provided every
    /// simple command in the line matches. Without it such lines never match them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_syntax: Option<bool>,
    /// `true`: matches opening an interactive shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// Transfer directions: `upload`, `download` (`any` = both). sftp sessions move
    /// files both ways, so an allow rule must name both to allow sftp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_transfer: Option<Vec<String>>,
    /// `host:port` globs of `direct-tcpip` destinations (`ssh -L`, `-W`, `-D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<String>>,
    /// `address:port` globs of `tcpip-forward` requests (`ssh -R`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_forward: Option<Vec<String>>,
    /// `true`: matches agent forwarding requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// `allow`, `deny` or `review`.
    pub action: String,
    /// Groups whose members may approve (review only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
    /// Approvals needed (review only): a number or `"each-group"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumConfig>,
    /// Text shown to the caller and recorded with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A pattern on one command line word by word.
#[derive(Debug, Clone)]
struct WordsPattern {
    text: String,
    /// `None` stands for `**`.
    words: Vec<Option<Word>>,
}

#[derive(Debug, Clone)]
struct Word {
    glob: Glob,
    /// The pattern names `..` itself: only then may it match a word that climbs up.
    allows_parent: bool,
}

impl Word {
    fn new(pattern: &str) -> Result<Self, String> {
        Ok(Self {
            glob: Glob::new(pattern)?,
            allows_parent: pattern.contains(".."),
        })
    }

    fn matches(&self, word: &str) -> bool {
        (self.allows_parent || !climbs_up(word)) && self.glob.matches(word)
    }
}

/// Whether a word holds a `..` path component (a `*` must not match it).
fn climbs_up(word: &str) -> bool {
    word.split(['/', '=']).any(|part| part == "..")
}

impl WordsPattern {
    fn new(text: &str) -> Result<Self, String> {
        let words = text
            .split_whitespace()
            .map(|w| {
                if w == "**" {
                    Ok(None)
                } else {
                    Word::new(w).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if words.is_empty() {
            return Err("empty command pattern".into());
        }
        Ok(Self {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            words,
        })
    }

    /// Dynamic programming over (pattern word, command word): `**` takes any run.
    fn matches(&self, words: &[String]) -> bool {
        let n = words.len();
        // ok[j]: the first i pattern words match the first j command words.
        let mut ok = vec![false; n + 1];
        ok[0] = true;
        for pat in &self.words {
            let mut next = vec![false; n + 1];
            match pat {
                None => {
                    let mut any = false;
                    for j in 0..=n {
                        any |= ok[j];
                        next[j] = any;
                    }
                }
                Some(w) => {
                    for j in 1..=n {
                        next[j] = ok[j - 1] && w.matches(&words[j - 1]);
                    }
                }
            }
            ok = next;
        }
        ok[n]
    }
}

/// A `host:port` glob; the host part is matched case-insensitively.
#[derive(Debug, Clone)]
struct EndpointGlob {
    text: String,
    host: Glob,
    port: Glob,
}

impl EndpointGlob {
    fn new(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} must be `host:port` (globs allowed: `*:443`)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port.is_empty() {
            return Err(format!("{text:?} must be `host:port` with non-empty parts"));
        }
        Ok(Self {
            text: text.to_string(),
            host: Glob::new(&host.to_ascii_lowercase())?,
            port: Glob::new(port)?,
        })
    }

    fn matches(&self, host: &str, port: u32) -> bool {
        self.host.matches(&host.to_ascii_lowercase()) && self.port.matches(&port.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    Upload,
    Download,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Exec {
        commands: Option<Vec<WordsPattern>>,
        programs: Option<Vec<Glob>>,
        shell_syntax: bool,
    },
    Shell,
    FileTransfer(BTreeSet<Direction>),
    Forward(Vec<EndpointGlob>),
    RemoteForward(Vec<EndpointGlob>),
    Agent,
}

/// A validated SSH rule.
#[derive(Debug, Clone)]
pub struct SshRule {
    /// The rule's id.
    pub id: String,
    /// Position in `ssh_rules` (from 0).
    pub index: usize,
    /// The verdict when it matches.
    pub verdict: Verdict,
    /// Approvers, for review rules.
    pub review: Option<ReviewRequirement>,
    /// The configured reason, if any.
    pub reason: Option<String>,
    groups: Option<Vec<String>>,
    matcher: Matcher,
}

/// Compiles `cfg`; errors name `ssh_rules[index]`, the id and the key.
pub(crate) fn compile_rule(index: usize, cfg: &SshRuleConfig) -> Result<SshRule, PolicyError> {
    let err = |key: &str, message: String| PolicyError::Setting {
        key: format!("ssh_rules[{index}] (id `{}`).{key}", cfg.id),
        message,
    };
    if cfg.id.trim().is_empty() {
        return Err(err("id", "must not be empty".into()));
    }
    let non_empty = |key: &str, v: &Option<Vec<String>>| match v {
        Some(list) if list.is_empty() => Err(err(
            key,
            "empty list matches nothing; remove the key to match anything".into(),
        )),
        Some(list) if list.iter().any(|s| s.trim().is_empty()) => {
            Err(err(key, "list holds an empty entry".into()))
        }
        _ => Ok(()),
    };
    for (key, list) in [
        ("groups", &cfg.groups),
        ("commands", &cfg.commands),
        ("programs", &cfg.programs),
        ("file_transfer", &cfg.file_transfer),
        ("forward", &cfg.forward),
        ("remote_forward", &cfg.remote_forward),
        ("approvers", &cfg.approvers),
    ] {
        non_empty(key, list)?;
    }
    let exec = cfg.commands.is_some() || cfg.programs.is_some();
    let present: Vec<&str> = [
        ("commands/programs", exec),
        ("shell", cfg.shell.is_some()),
        ("file_transfer", cfg.file_transfer.is_some()),
        ("forward", cfg.forward.is_some()),
        ("remote_forward", cfg.remote_forward.is_some()),
        ("agent", cfg.agent.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if present.len() != 1 {
        return Err(err(
            "action",
            format!(
                "an SSH rule matches exactly one kind of request: give one of commands/programs, \
                 shell, file_transfer, forward, remote_forward, agent (found: {})",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        ));
    }
    if cfg.shell_syntax.is_some() && !exec {
        return Err(err(
            "shell_syntax",
            "only applies to commands/programs rules".into(),
        ));
    }
    if cfg.shell == Some(false) {
        return Err(err(
            "shell",
            "write `shell = true` or leave the key out".into(),
        ));
    }
    if cfg.agent == Some(false) {
        return Err(err(
            "agent",
            "write `agent = true` or leave the key out".into(),
        ));
    }
    let matcher = if exec {
        let commands = match &cfg.commands {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| WordsPattern::new(p).map_err(|m| err("commands", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let programs = match &cfg.programs {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| Glob::new(p).map_err(|m| err("programs", m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Matcher::Exec {
            commands,
            programs,
            shell_syntax: cfg.shell_syntax.unwrap_or(false),
        }
    } else if cfg.shell.is_some() {
        Matcher::Shell
    } else if let Some(list) = &cfg.file_transfer {
        let mut dirs = BTreeSet::new();
        for d in list {
            match d.as_str() {
                "upload" => {
                    dirs.insert(Direction::Upload);
                }
                "download" => {
                    dirs.insert(Direction::Download);
                }
                "any" => {
                    dirs.insert(Direction::Upload);
                    dirs.insert(Direction::Download);
                }
                other => {
                    return Err(err(
                        "file_transfer",
                        format!("unknown direction {other:?}; expected upload, download or any"),
                    ));
                }
            }
        }
        Matcher::FileTransfer(dirs)
    } else if let Some(list) = &cfg.forward {
        Matcher::Forward(
            list.iter()
                .map(|p| EndpointGlob::new(p).map_err(|m| err("forward", m)))
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else if let Some(list) = &cfg.remote_forward {
        Matcher::RemoteForward(
            list.iter()
                .map(|p| EndpointGlob::new(p).map_err(|m| err("remote_forward", m)))
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        Matcher::Agent
    };
    let (verdict, review) =
        crate::rules::compile_action(&cfg.action, cfg.approvers.as_ref(), cfg.quorum.as_ref())
            .map_err(|(key, message)| err(key, message))?;
    Ok(SshRule {
        id: cfg.id.clone(),
        index,
        verdict,
        review,
        reason: cfg.reason.clone(),
        groups: cfg.groups.clone(),
        matcher,
    })
}

/// An SSH request as the rules see it.
#[derive(Debug)]
enum Request<'a> {
    Exec(CommandLine),
    Shell,
    FileTransfer(BTreeSet<Direction>),
    Forward {
        host: &'a str,
        port: u32,
    },
    RemoteForward {
        host: &'a str,
        port: u32,
    },
    Agent,
    /// Forwarding kinds no rule can allow (X11, Unix sockets).
    OtherForward(&'a str),
}

fn request(command: &Command) -> Option<Request<'_>> {
    Some(match command {
        Command::Exec { command } => Request::Exec(parse_command_line(command)),
        Command::Shell { .. } => Request::Shell,
        Command::FileTransfer { direction, .. } => {
            Request::FileTransfer(match direction.as_deref() {
                Some("upload") => [Direction::Upload].into(),
                Some("download") => [Direction::Download].into(),
                _ => [Direction::Upload, Direction::Download].into(),
            })
        }
        Command::Forward { mode, host, port } => match mode.as_str() {
            "direct-tcpip" => Request::Forward { host, port: *port },
            "tcpip-forward" => Request::RemoteForward { host, port: *port },
            "agent" => Request::Agent,
            other => Request::OtherForward(other),
        },
        _ => return None,
    })
}

impl SshRule {
    fn covering(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// On a match, what matched.
    fn matches(&self, identity: &Identity, req: &Request<'_>) -> Option<Vec<String>> {
        let mut why = Vec::new();
        if let Some(groups) = &self.groups {
            let hit: Vec<&str> = groups
                .iter()
                .filter(|g| identity.in_group(g))
                .map(String::as_str)
                .collect();
            if hit.is_empty() {
                return None;
            }
            why.push(format!("group {}", hit.join(", ")));
        }
        match (&self.matcher, req) {
            (
                Matcher::Exec {
                    commands,
                    programs,
                    shell_syntax,
                },
                Request::Exec(line),
            ) => {
                if line.error.is_some() || line.commands.is_empty() {
                    return None;
                }
                let one = |c: &SimpleCommand| -> Option<String> {
                    let mut hit = Vec::new();
                    if let Some(globs) = programs {
                        let program = c.program()?;
                        let g = globs.iter().find(|g| {
                            (g.pattern().contains('/') || !program.contains('/'))
                                && (g.pattern().contains("..") || !climbs_up(program))
                                && g.matches(program)
                        })?;
                        hit.push(format!("program {}", g.pattern()));
                    }
                    if let Some(patterns) = commands {
                        let p = patterns.iter().find(|p| p.matches(&c.words))?;
                        hit.push(format!("command `{}`", p.text));
                    }
                    Some(hit.join(", "))
                };
                if self.covering() {
                    if line.has_syntax() && !shell_syntax {
                        return None;
                    }
                    let hits = line.commands.iter().map(one).collect::<Option<Vec<_>>>()?;
                    if line.has_syntax() {
                        why.push(format!("shell syntax {}", line.syntax.join(" ")));
                    }
                    why.extend(dedup(hits));
                } else {
                    // Deny and review rules: any simple command of the line is enough.
                    let hits: Vec<String> = line.commands.iter().filter_map(one).collect();
                    if hits.is_empty() {
                        return None;
                    }
                    why.extend(dedup(hits));
                }
            }
            (Matcher::Shell, Request::Shell) => why.push("shell".into()),
            (Matcher::FileTransfer(dirs), Request::FileTransfer(wanted)) => {
                let ok = if self.covering() {
                    wanted.is_subset(dirs)
                } else {
                    !wanted.is_disjoint(dirs)
                };
                if !ok {
                    return None;
                }
                why.push(format!(
                    "file transfer {}",
                    wanted
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            (Matcher::Forward(globs), Request::Forward { host, port })
            | (Matcher::RemoteForward(globs), Request::RemoteForward { host, port }) => {
                let g = globs.iter().find(|g| g.matches(host, *port))?;
                why.push(format!("forward {}", g.text));
            }
            (Matcher::Agent, Request::Agent) => why.push("agent forwarding".into()),
            _ => return None,
        }
        Some(why)
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Decides on an SSH command with `rules`, or `None` when the command is not an SSH
/// request (SQL, HTTP). `default` applies to exec, shell and file transfer when no
/// rule matches; forwarding without a matching rule is always denied.
pub(crate) fn decide(
    rules: &[SshRule],
    default: DefaultAction,
    identity: &Identity,
    command: &Command,
) -> Option<Decision> {
    let req = request(command)?;
    Some(decide_request(rules, default, identity, &req))
}

fn decide_request(
    rules: &[SshRule],
    default: DefaultAction,
    identity: &Identity,
    req: &Request<'_>,
) -> Decision {
    if let Request::Exec(line) = req
        && let Some(e) = &line.error
    {
        return Decision::deny(
            RULE_UNPARSABLE,
            format!("the command line cannot be read ({e})"),
        );
    }
    if let Request::OtherForward(kind) = req {
        return Decision::deny(
            RULE_FORWARDING_DEFAULT,
            format!("{kind} forwarding is not supported by SSH rules"),
        );
    }
    for rule in rules {
        if let Some(why) = rule.matches(identity, req) {
            let matched = why.join("; ");
            let reason = match &rule.reason {
                Some(r) => format!("{r} (rule `{}`: {matched})", rule.id),
                None => format!("rule `{}` matched: {matched}", rule.id),
            };
            let mut d = Decision::new(rule.verdict, rule.id.clone(), reason);
            if rule.verdict == Verdict::Review {
                d.review = rule.review.clone();
            }
            return d;
        }
    }
    let what = match req {
        Request::Exec(line) if line.has_syntax() => format!(
            "no SSH rule matched the command line (shell syntax {})",
            line.syntax.join(" ")
        ),
        Request::Exec(_) => "no SSH rule matched the command line".to_string(),
        Request::Shell => "no SSH rule matched the shell".to_string(),
        Request::FileTransfer(_) => "no SSH rule matched the file transfer".to_string(),
        Request::Forward { .. }
        | Request::RemoteForward { .. }
        | Request::Agent
        | Request::OtherForward(_) => {
            return Decision::deny(
                RULE_FORWARDING_DEFAULT,
                "no SSH rule allows this forwarding; forwarding is denied by default",
            );
        }
    };
    match default {
        DefaultAction::Allow => Decision::allow(RULE_DEFAULT, format!("{what}; default allow")),
        DefaultAction::Deny => Decision::deny(RULE_DEFAULT, format!("{what}; default deny")),
    }
}

/// A human-readable account of how an SSH command is read and decided.
pub(crate) fn explain(
    rules: &[SshRule],
    default: DefaultAction,
    identity: &Identity,
    command: &Command,
) -> Option<String> {
    let req = request(command)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "identity: {} (groups: {})",
        identity.subject,
        if identity.groups.is_empty() {
            "none".to_string()
        } else {
            identity.groups.join(", ")
        }
    );
    let _ = writeln!(out, "request: {}", command.summary());
    if let Request::Exec(line) = &req {
        for (i, c) in line.commands.iter().enumerate() {
            let _ = writeln!(out, "  command {}: {:?}", i + 1, c.words);
        }
        let _ = writeln!(
            out,
            "  shell syntax: {}",
            if line.syntax.is_empty() {
                "-".to_string()
            } else {
                line.syntax.join(" ")
            }
        );
        if let Some(e) = &line.error {
            let _ = writeln!(out, "  parse error: {e}");
        }
    }
    let d = decide_request(rules, default, identity, &req);
    let verdict = match d.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::Review => "review",
    };
    let _ = writeln!(out, "decision: {verdict} by `{}`: {}", d.rule, d.reason);
    if let Some(req) = &d.review {
        let quorum = match req.quorum {
            Quorum::Count(n) => format!("{n} approval(s)"),
            Quorum::EachGroup => "one approval from each group".to_string(),
        };
        let _ = writeln!(out, "approvers: {} ({quorum})", req.approvers.join(", "));
    }
    Some(out)
}
