//! [`HttpPolicy`]: method, path, query and header rules for HTTP targets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderMap;
use portcullis_core::{
    Command, CommandPolicy, Decision, Quorum, Result, ReviewRequirement, SessionContext, Verdict,
};
use serde::{Deserialize, Serialize};

use crate::HttpError;

tokio::task_local! {
    static REQUEST_HEADERS: Arc<HeaderMap>;
}

/// Runs `fut` with `headers` visible to [`HttpPolicy`] header rules (the gateway does this
/// around each pipeline call).
pub async fn with_request_headers<F: std::future::Future>(
    headers: Arc<HeaderMap>,
    fut: F,
) -> F::Output {
    REQUEST_HEADERS.scope(headers, fut).await
}

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAction {
    /// Forward the request.
    Allow,
    /// Answer 403 with the rule id.
    #[default]
    Deny,
    /// Ask the pipeline's approver.
    Review,
}

/// The rules of one HTTP target.
///
/// ```toml
/// default = "deny"
///
/// [[rules]]
/// id = "no-secrets"
/// paths = ["/api/v1/namespaces/*/secrets/**"]
/// action = "deny"
///
/// [[rules]]
/// id = "deletes-need-review"
/// methods = ["DELETE"]
/// action = "review"
/// approvers = ["sre-leads"]
///
/// [[rules]]
/// id = "read-pods"
/// methods = ["GET"]
/// paths = ["/api/v1/namespaces/*/pods/**", "/users/{id}"]
/// groups = ["ops"]
/// query = { watch = "*" }
/// headers = { "x-dry-run" = "All" }
/// action = "allow"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPolicyConfig {
    /// Verdict when no rule matches (`allow` or `deny`, default `deny`).
    #[serde(default = "default_action")]
    pub default: HttpAction,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<HttpRuleConfig>,
}

fn default_action() -> HttpAction {
    HttpAction::Deny
}

/// One rule. Every condition given must hold; within a list any entry may match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRuleConfig {
    /// Rule id, shown to clients on denial and recorded with the decision.
    pub id: String,
    /// What to do on a match.
    pub action: HttpAction,
    /// Methods (case-insensitive); empty or `*` means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path patterns: `*` within one segment, `**` any number of segments, `{name}` one segment.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Identity groups; empty means anyone allowed on the target.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Query parameters that must be present with a value matching the glob.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request headers that must be present with a value matching the glob.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Reason shown with the decision.
    #[serde(default)]
    pub reason: Option<String>,
    /// Review: groups whose members may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Review: approvals needed (default 1).
    #[serde(default)]
    pub quorum: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSeg {
    /// One segment matching a glob (`*` inside a segment).
    Glob(String),
    /// One non-empty segment (`{id}`).
    Param,
    /// Any number of segments.
    Rest,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<PathSeg>);

impl PathPattern {
    /// Compiles `/api/v1/*/pods/**` or `/users/{id}`.
    pub fn parse(pattern: &str) -> std::result::Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern `{pattern}` must start with `/`"));
        }
        let mut segs = Vec::new();
        for s in pattern.split('/').filter(|s| !s.is_empty()) {
            segs.push(if s == "**" {
                PathSeg::Rest
            } else if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
                PathSeg::Param
            } else if s.contains("**") {
                return Err(format!("`**` must be a whole segment in `{pattern}`"));
            } else {
                PathSeg::Glob(s.to_owned())
            });
        }
        Ok(Self(segs))
    }

    /// Whether the (decoded, dot-free) path segments match.
    pub fn matches(&self, segments: &[String]) -> bool {
        match_segs(&self.0, segments)
    }
}

fn match_segs(pat: &[PathSeg], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((PathSeg::Rest, rest)) => {
            (0..=path.len()).any(|i| path.get(i..).is_some_and(|p| match_segs(rest, p)))
        }
        Some((seg, rest)) => match path.split_first() {
            None => false,
            Some((first, prest)) => {
                let one = match seg {
                    PathSeg::Param => !first.is_empty(),
                    PathSeg::Glob(g) => glob(g.as_bytes(), first.as_bytes()),
                    PathSeg::Rest => false,
                };
                one && match_segs(rest, prest)
            }
        },
    }
}

/// Wildcard match where `*` matches any run of bytes.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(a), Some(b)) if a == b => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|r| r.iter().all(|&c| c == b'*'))
}

/// Decodes `%XX` escapes (invalid escapes stay as they are); `plus` also turns `+` into a space.
pub(crate) fn percent_decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            b'+' if plus => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    portcullis_core::text::lossy_string(out)
}

/// Splits a raw path into decoded, non-empty segments. `None` if it has `.` or `..` segments
/// (also percent-encoded), which the gateway refuses rather than guess how the upstream reads them.
pub fn path_segments(path: &str) -> Option<Vec<String>> {
    let mut segs = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw, false);
        if seg == "." || seg == ".." {
            return None;
        }
        segs.push(seg);
    }
    Some(segs)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    action: HttpAction,
    methods: Vec<String>,
    paths: Vec<PathPattern>,
    groups: Vec<String>,
    query: Vec<(String, String)>,
    headers: Vec<(http::HeaderName, String)>,
    reason: String,
    review: Option<ReviewRequirement>,
}

/// The compiled rules of one target.
#[derive(Debug, Clone)]
pub struct CompiledHttpPolicy {
    default: HttpAction,
    rules: Vec<Rule>,
}

impl HttpPolicyConfig {
    /// Validates and compiles; errors name the key under `at`.
    pub fn compile(&self, at: &str) -> std::result::Result<CompiledHttpPolicy, HttpError> {
        if self.default == HttpAction::Review {
            return Err(HttpError::config(
                format!("{at}.default"),
                "must be allow or deny",
            ));
        }
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let rat = format!("{at}.rules[{i}]");
            if r.id.is_empty() || !seen.insert(r.id.clone()) {
                return Err(HttpError::config(
                    format!("{rat}.id"),
                    "must be non-empty and unique",
                ));
            }
            let mut paths = Vec::new();
            for (j, p) in r.paths.iter().enumerate() {
                paths.push(
                    PathPattern::parse(p)
                        .map_err(|e| HttpError::config(format!("{rat}.paths[{j}]"), e))?,
                );
            }
            let mut headers = Vec::new();
            for (name, v) in &r.headers {
                let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    HttpError::config(format!("{rat}.headers.{name}"), "not a header name")
                })?;
                headers.push((n, v.clone()));
            }
            let review = match r.action {
                HttpAction::Review => {
                    if r.approvers.is_empty() {
                        return Err(HttpError::config(
                            format!("{rat}.approvers"),
                            "a review rule needs approvers",
                        ));
                    }
                    Some(ReviewRequirement {
                        approvers: r.approvers.clone(),
                        quorum: Quorum::Count(r.quorum.unwrap_or(1).max(1)),
                    })
                }
                _ => None,
            };
            rules.push(Rule {
                id: r.id.clone(),
                action: r.action,
                methods: r
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .filter(|m| m != "*")
                    .collect(),
                paths,
                groups: r.groups.clone(),
                query: r.query.clone().into_iter().collect(),
                headers,
                reason: r
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("matched rule {}", r.id)),
                review,
            });
        }
        Ok(CompiledHttpPolicy {
            default: self.default,
            rules,
        })
    }
}

impl CompiledHttpPolicy {
    /// Decides on one request. `headers` is `None` when the caller has no headers to offer:
    /// then header conditions fail safe (an allow rule with header conditions does not match,
    /// a deny or review rule does).
    pub fn decide(
        &self,
        session: &SessionContext,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: Option<&HeaderMap>,
    ) -> Decision {
        let method = method.to_ascii_uppercase();
        let kinds = vec![
            if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
                "read"
            } else {
                "write"
            }
            .to_owned(),
        ];
        let Some(segments) = path_segments(path) else {
            let mut d = Decision::deny("path-normalization", "path has dot segments");
            d.kinds = kinds;
            return d;
        };
        let pairs = query.map(query_pairs).unwrap_or_default();
        for rule in &self.rules {
            if !rule.methods.is_empty() && !rule.methods.contains(&method) {
                continue;
            }
            if !rule.paths.is_empty() && !rule.paths.iter().any(|p| p.matches(&segments)) {
                continue;
            }
            if !rule.groups.is_empty() && !session.identity.in_any(&rule.groups) {
                continue;
            }
            let query_ok = rule.query.iter().all(|(k, g)| {
                pairs
                    .iter()
                    .any(|(pk, pv)| pk == k && glob(g.as_bytes(), pv.as_bytes()))
            });
            if !query_ok {
                continue;
            }
            let headers_ok = match headers {
                Some(h) => rule.headers.iter().all(|(name, g)| {
                    h.get_all(name)
                        .iter()
                        .any(|v| v.to_str().is_ok_and(|v| glob(g.as_bytes(), v.as_bytes())))
                }),
                None => rule.headers.is_empty() || rule.action != HttpAction::Allow,
            };
            if !headers_ok {
                continue;
            }
            let verdict = match rule.action {
                HttpAction::Allow => Verdict::Allow,
                HttpAction::Deny => Verdict::Deny,
                HttpAction::Review => Verdict::Review,
            };
            let mut d = Decision::new(verdict, rule.id.clone(), rule.reason.clone());
            d.review = rule.review.clone();
            d.kinds = kinds;
            return d;
        }
        let mut d = match self.default {
            HttpAction::Allow => Decision::allow("default", "no rule matched; default allow"),
            _ => Decision::deny("default", "no rule matched; default deny"),
        };
        d.kinds = kinds;
        d
    }
}

/// HTTP rules per target, implementing [`CommandPolicy`] for the pipeline.
///
/// The session's target must admit the identity (rule `target-access`). HTTP commands on a
/// target with rules are decided by them; everything else goes to the fallback policy (the
/// one the pipeline had before), or is denied (rule `no-policy`) when there is none. Header
/// conditions see the request headers through [`with_request_headers`].
#[derive(Clone)]
pub struct HttpPolicy {
    targets: HashMap<String, CompiledHttpPolicy>,
    fallback: Option<Arc<dyn CommandPolicy>>,
}

impl std::fmt::Debug for HttpPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPolicy")
            .field("targets", &self.targets.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl HttpPolicy {
    /// A policy with no targets.
    pub fn new(fallback: Option<Arc<dyn CommandPolicy>>) -> Self {
        Self {
            targets: HashMap::new(),
            fallback,
        }
    }

    /// Adds the rules of target `name`.
    pub fn insert(&mut self, name: impl Into<String>, policy: CompiledHttpPolicy) {
        self.targets.insert(name.into(), policy);
    }

    /// Whether no target has rules.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

impl CommandPolicy for HttpPolicy {
    fn decide(&self, session: &SessionContext, command: &Command) -> Result<Decision> {
        if !session.target.admits(&session.identity) {
            return Ok(Decision::deny(
                "target-access",
                "identity is not in a group allowed on the target",
            ));
        }
        if let (
            Command::Http {
                method,
                path,
                query,
                ..
            },
            Some(policy),
        ) = (command, self.targets.get(&session.target.name))
        {
            let headers = REQUEST_HEADERS.try_with(|h| h.clone()).ok();
            return Ok(policy.decide(session, method, path, query.as_deref(), headers.as_deref()));
        }
        match &self.fallback {
            Some(f) => f.decide(session, command),
            None => Ok(Decision::deny("no-policy", "no policy for this target")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{AuthMethod, Identity, Protocol, SessionId, Target, Timestamp};

    fn session(groups: &[&str]) -> SessionContext {
        SessionContext {
            id: SessionId::new(),
            identity: Identity {
                subject: "alice".into(),
                groups: groups.iter().map(|g| (*g).into()).collect(),
                method: AuthMethod::Jwt,
                issuer: None,
                expires_at: None,
            },
            target: Arc::new(Target {
                name: "k8s".into(),
                protocol: Protocol::Http,
                upstream: "127.0.0.1:1".into(),
                allowed_groups: vec!["ops".into()],
            }),
            client_addr: None,
            opened_at: Timestamp::now(),
        }
    }

    #[test]
    fn patterns() {
        let p = PathPattern::parse("/api/v1/*/pods/**").unwrap();
        let segs = |s: &str| path_segments(s).unwrap();
        assert!(p.matches(&segs("/api/v1/ns/pods")));
        assert!(p.matches(&segs("/api/v1/ns/pods/a/log")));
        assert!(!p.matches(&segs("/api/v1/pods")));
        let t = PathPattern::parse("/users/{id}").unwrap();
        assert!(t.matches(&segs("/users/42")));
        assert!(!t.matches(&segs("/users/42/keys")));
        assert!(t.matches(&segs("//users/%34%32/")));
        assert!(path_segments("/a/%2e%2e/b").is_none());
        assert!(glob(b"*.json", b"a.b.json") && !glob(b"a*c", b"abd"));
    }

    #[test]
    fn rules_in_order() {
        let cfg: HttpPolicyConfig = toml::from_str(
            r#"
            [[rules]]
            id = "no-secrets"
            paths = ["/api/v1/namespaces/*/secrets/**"]
            action = "deny"
            [[rules]]
            id = "dry-run"
            methods = ["delete"]
            headers = { "x-dry-run" = "All" }
            action = "allow"
            [[rules]]
            id = "deletes"
            methods = ["DELETE"]
            action = "review"
            approvers = ["leads"]
            [[rules]]
            id = "watch"
            methods = ["GET"]
            query = { watch = "tr*" }
            groups = ["ops"]
            action = "allow"
            "#,
        )
        .unwrap();
        let p = cfg.compile("t").unwrap();
        let s = session(&["ops"]);
        let d = p.decide(&s, "GET", "/api/v1/namespaces/x/secrets/y", None, None);
        assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, "no-secrets"));
        let mut h = HeaderMap::new();
        h.insert("x-dry-run", "All".parse().unwrap());
        let d = p.decide(&s, "DELETE", "/x", None, Some(&h));
        assert_eq!(d.rule, "dry-run");
        // Without headers the allow rule does not match; the review rule does.
        let d = p.decide(&s, "DELETE", "/x", None, None);
        assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Review, "deletes"));
        assert!(d.review.is_some());
        let d = p.decide(&s, "GET", "/p", Some("a=1&watch=true"), None);
        assert_eq!(d.rule, "watch");
        let d = p.decide(&session(&["dev"]), "GET", "/p", Some("watch=true"), None);
        assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, "default"));
    }
}
