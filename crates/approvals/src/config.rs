//! The `[approvals]` section of the gateway configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use portcullis_core::Secret;

use crate::ApprovalError;

/// Longest accepted `wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Longest accepted `request_ttl`.
pub const MAX_REQUEST_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest accepted `max_grant`.
pub const MAX_GRANT_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most attempts accepted for one webhook delivery.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 20;

/// Approval settings.
///
/// ```toml
/// path = "/var/lib/portcullis/approvals"   # sled directory
/// wait = "60s"                             # how long a statement waits for a decision
/// request_ttl = "1h"                       # how long a request stays open
/// approve_url = "https://portcullis.example.com:9080"
/// max_grant = "8h"                         # longest just-in-time grant
///
/// [[webhooks]]
/// url = "https://hooks.slack.example/services/T000/B000/XXXX"
/// format = "slack"                         # or "json" (default)
/// events = ["requested", "closed"]         # default: all
/// attempts = 5
/// initial_backoff = "500ms"
/// timeout = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Directory of the sled database holding requests, votes and grants.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// How long a statement under review waits for a decision before it is denied
    /// (the request itself stays open).
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// How long a request stays open for votes; also how long a one-time approval
    /// stays usable after it was given.
    #[serde(default = "default_request_ttl", with = "humantime_serde")]
    pub request_ttl: Duration,
    /// Base URL of the gateway's admin API, shown to clients and in notifications.
    #[serde(default)]
    pub approve_url: Option<String>,
    /// Longest just-in-time grant an approver may issue.
    #[serde(default = "default_max_grant", with = "humantime_serde")]
    pub max_grant: Duration,
    /// Where to send notifications.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Notifications waiting for delivery; beyond this they are dropped and counted.
    #[serde(default = "default_queue_capacity")]
    pub webhook_queue: usize,
}

/// One notification endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL receiving a POST per notification. Held as a secret:
    /// webhook URLs often carry a token (Slack); logs show only scheme, host and port.
    pub url: Secret<String>,
    /// Body format.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Which notifications to send; `None` sends all of them.
    #[serde(default)]
    pub events: Option<Vec<WebhookEvent>>,
    /// Attempts per notification before it is given up (at least 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each failed attempt (at most 60s).
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// A JSON document describing the request (see the crate docs).
    #[default]
    Json,
    /// A Slack-compatible `{"text": "..."}` message.
    Slack,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A new request was opened.
    Requested,
    /// An approver voted.
    Decided,
    /// A request reached a final state (approved, rejected, expired, used).
    Closed,
}

impl WebhookEvent {
    /// The name used in configuration and in JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Requested => "requested",
            WebhookEvent::Decided => "decided",
            WebhookEvent::Closed => "closed",
        }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from(".portcullis/approvals")
}

fn default_wait() -> Duration {
    Duration::from_secs(60)
}

fn default_request_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_grant() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_queue_capacity() -> usize {
    1024
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff() -> Duration {
    Duration::from_millis(500)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self::new(default_path())
    }
}

impl ApprovalConfig {
    /// The defaults, storing under `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            wait: default_wait(),
            request_ttl: default_request_ttl(),
            approve_url: None,
            max_grant: default_max_grant(),
            webhooks: Vec::new(),
            webhook_queue: default_queue_capacity(),
        }
    }

    /// Checks the values are usable; the error names the offending key
    /// (`approvals.webhooks[1].url`).
    pub fn validate(&self) -> Result<(), ApprovalError> {
        let bad = |key: &str, message: String| {
            Err(ApprovalError::Config {
                key: format!("approvals.{key}"),
                message,
            })
        };
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if self.path.as_os_str().is_empty() {
            return bad("path", "must not be empty".into());
        }
        if self.wait.is_zero() || self.wait > MAX_WAIT {
            return bad(
                "wait",
                format!(
                    "must be between 1ms and {}, not {}",
                    fmt(MAX_WAIT),
                    fmt(self.wait)
                ),
            );
        }
        if self.request_ttl < Duration::from_secs(1) || self.request_ttl > MAX_REQUEST_TTL {
            return bad(
                "request_ttl",
                format!(
                    "must be between 1s and {}, not {}",
                    fmt(MAX_REQUEST_TTL),
                    fmt(self.request_ttl)
                ),
            );
        }
        if self.wait > self.request_ttl {
            return bad(
                "wait",
                format!(
                    "must not be longer than request_ttl ({}), not {}",
                    fmt(self.request_ttl),
                    fmt(self.wait)
                ),
            );
        }
        if self.max_grant.is_zero() || self.max_grant > MAX_GRANT_LIMIT {
            return bad(
                "max_grant",
                format!(
                    "must be between 1ms and {}, not {}",
                    fmt(MAX_GRANT_LIMIT),
                    fmt(self.max_grant)
                ),
            );
        }
        if let Some(url) = &self.approve_url
            && let Err(m) = check_url(url)
        {
            return bad("approve_url", m);
        }
        if self.webhook_queue == 0 || self.webhook_queue > 1 << 20 {
            return bad(
                "webhook_queue",
                format!(
                    "must be between 1 and {}, not {}",
                    1 << 20,
                    self.webhook_queue
                ),
            );
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            let key = |k: &str| format!("webhooks[{i}].{k}");
            if let Err(m) = check_url(hook.url.expose()) {
                return bad(&key("url"), m);
            }
            if hook.attempts == 0 || hook.attempts > MAX_WEBHOOK_ATTEMPTS {
                return bad(
                    &key("attempts"),
                    format!(
                        "must be between 1 and {MAX_WEBHOOK_ATTEMPTS}, not {}",
                        hook.attempts
                    ),
                );
            }
            if hook.initial_backoff > Duration::from_secs(60) {
                return bad(
                    &key("initial_backoff"),
                    format!("must be at most 60s, not {}", fmt(hook.initial_backoff)),
                );
            }
            if hook.timeout.is_zero() || hook.timeout > Duration::from_secs(300) {
                return bad(
                    &key("timeout"),
                    format!("must be between 1ms and 5m, not {}", fmt(hook.timeout)),
                );
            }
            if hook.events.as_ref().is_some_and(Vec::is_empty) {
                return bad(
                    &key("events"),
                    "must name at least one of requested, decided, closed (or be left out)".into(),
                );
            }
        }
        Ok(())
    }
}

/// Checks an `http(s)://host...` URL; returns why not (without repeating the URL,
/// which may carry a token).
pub(crate) fn check_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults() {
        let c: ApprovalConfig = toml::from_str("").unwrap();
        assert_eq!(c, ApprovalConfig::default());
        assert_eq!(c.wait, Duration::from_secs(60));
        assert_eq!(c.request_ttl, Duration::from_secs(3600));
        assert_eq!(c.max_grant, Duration::from_secs(8 * 3600));
        assert_eq!(c.path, PathBuf::from(".portcullis/approvals"));
        c.validate().unwrap();
    }

    #[test]
    fn parses_webhooks() {
        let c: ApprovalConfig = toml::from_str(
            r#"
            path = "/tmp/a"
            wait = "5s"
            approve_url = "http://127.0.0.1:9080"
            [[webhooks]]
            url = "http://127.0.0.1:1/hook"
            format = "slack"
            events = ["requested", "closed"]
            attempts = 3
            initial_backoff = "100ms"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        let hook = &c.webhooks[0];
        assert_eq!(hook.format, WebhookFormat::Slack);
        assert_eq!(
            hook.events.as_deref(),
            Some(&[WebhookEvent::Requested, WebhookEvent::Closed][..])
        );
        assert_eq!(hook.attempts, 3);
        assert_eq!(hook.initial_backoff, Duration::from_millis(100));
        assert_eq!(hook.timeout, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(toml::from_str::<ApprovalConfig>("wiat = \"1s\"").is_err());
        assert!(
            toml::from_str::<ApprovalConfig>("[[webhooks]]\nurl = \"http://x\"\nformat = \"xml\"")
                .is_err()
        );
        let key_of = |c: ApprovalConfig| match c.validate() {
            Err(ApprovalError::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        };
        let mut c = ApprovalConfig::new("p");
        c.wait = Duration::ZERO;
        assert_eq!(key_of(c), "approvals.wait");
        let mut c = ApprovalConfig::new("p");
        c.wait = Duration::from_secs(3000);
        c.request_ttl = Duration::from_secs(60);
        assert_eq!(key_of(c), "approvals.wait");
        let mut c = ApprovalConfig::new("p");
        c.max_grant = Duration::ZERO;
        assert_eq!(key_of(c), "approvals.max_grant");
        let mut c = ApprovalConfig::new("p");
        c.approve_url = Some("ftp://x".into());
        assert_eq!(key_of(c), "approvals.approve_url");
        let mut c: ApprovalConfig =
            toml::from_str("[[webhooks]]\nurl = \"http://ok\"\n[[webhooks]]\nurl = \"nope\"")
                .unwrap();
        assert_eq!(key_of(c.clone()), "approvals.webhooks[1].url");
        c.webhooks.truncate(1);
        c.webhooks[0].attempts = 0;
        assert_eq!(key_of(c), "approvals.webhooks[0].attempts");

        // Webhook URLs carry tokens: neither errors nor debug output repeat them.
        let c: ApprovalConfig =
            toml::from_str("[[webhooks]]\nurl = \"slack://hooks/T0/B0/secret-token\"").unwrap();
        assert!(!format!("{c:?}").contains("secret-token"));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("approvals.webhooks[0].url"), "{err}");
        assert!(!err.contains("secret-token"), "{err}");
    }
}
