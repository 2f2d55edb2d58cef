//! Errors of the HTTP adapter, each with the side that failed and the status it maps to.

use http::StatusCode;
use portcullis_core::Side;

/// What went wrong while configuring the gateway or handling one request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A configuration value is invalid; `key` names it (`targets.k8s.credential.token`).
    #[error("invalid configuration at `{key}`: {message}")]
    Config {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// No route matches the request's host and path.
    #[error("no route for host `{host}` and path `{path}`")]
    NoRoute {
        /// Host the client asked for (without port).
        host: String,
        /// Request path.
        path: String,
    },
    /// The client sent something the gateway refuses to interpret (dot segments, bad body).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The identity may not use the target at all.
    #[error("{subject} is not allowed on target `{target}`")]
    AccessDenied {
        /// Who asked.
        subject: String,
        /// Which target.
        target: String,
    },
    /// A policy rule denied the request.
    #[error("denied by policy rule {rule}: {reason}")]
    Denied {
        /// Deciding rule id.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The upstream could not be reached (connect refused, DNS, TLS handshake).
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out: {0}")]
    UpstreamTimeout(String),
    /// The upstream reset or closed the connection, or broke HTTP.
    #[error("upstream failed: {0}")]
    UpstreamReset(String),
    /// The request's audit record could not be written; nothing was forwarded.
    #[error("audit record could not be written: {0}")]
    Audit(String),
    /// Response masking failed; the rest of the body was withheld.
    #[error("masking failed: {0}")]
    Masking(String),
    /// Listening or accepting failed.
    #[error("listener failed: {0}")]
    Listen(#[source] std::io::Error),
    /// The gateway failed internally.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    /// A configuration error at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        HttpError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            HttpError::NoRoute { .. } | HttpError::BadRequest(_) => Side::Client,
            HttpError::AccessDenied { .. } | HttpError::Denied { .. } => Side::Policy,
            HttpError::UpstreamConnect(_)
            | HttpError::UpstreamTimeout(_)
            | HttpError::UpstreamReset(_) => Side::Upstream,
            HttpError::Config { .. }
            | HttpError::Audit(_)
            | HttpError::Masking(_)
            | HttpError::Listen(_)
            | HttpError::Internal(_) => Side::Internal,
        }
    }

    /// Short machine-readable code used in JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Config { .. } => "config",
            HttpError::NoRoute { .. } => "no_route",
            HttpError::BadRequest(_) => "bad_request",
            HttpError::AccessDenied { .. } => "access_denied",
            HttpError::Denied { .. } => "denied",
            HttpError::UpstreamConnect(_) => "upstream_unreachable",
            HttpError::UpstreamTimeout(_) => "upstream_timeout",
            HttpError::UpstreamReset(_) => "upstream_failed",
            HttpError::Audit(_) => "audit_unavailable",
            HttpError::Masking(_) => "masking_failed",
            HttpError::Listen(_) => "listener",
            HttpError::Internal(_) => "internal",
        }
    }

    /// The status answered to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NoRoute { .. } => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::AccessDenied { .. } | HttpError::Denied { .. } => StatusCode::FORBIDDEN,
            HttpError::UpstreamConnect(_) | HttpError::UpstreamReset(_) => StatusCode::BAD_GATEWAY,
            HttpError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            HttpError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Config { .. }
            | HttpError::Masking(_)
            | HttpError::Listen(_)
            | HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body answered to the client: `{"error", "side", "message"}` plus `rule` for denials.
    pub fn body(&self) -> serde_json::Value {
        let message = match self.side() {
            // Internal details stay in the logs.
            Side::Internal if !matches!(self, HttpError::Audit(_)) => {
                "the gateway failed".to_owned()
            }
            _ => self.to_string(),
        };
        let mut body = serde_json::json!({
            "error": self.code(),
            "side": self.side().to_string(),
            "message": message,
        });
        if let (HttpError::Denied { rule, .. }, Some(map)) = (self, body.as_object_mut()) {
            map.insert("rule".into(), serde_json::Value::String(rule.clone()));
        }
        if let (HttpError::AccessDenied { .. }, Some(map)) = (self, body.as_object_mut()) {
            map.insert("rule".into(), "target-access".into());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_statuses() {
        let e = HttpError::UpstreamTimeout("after 1s".into());
        assert_eq!(
            (e.side(), e.status()),
            (Side::Upstream, StatusCode::GATEWAY_TIMEOUT)
        );
        let e = HttpError::Denied {
            rule: "no-secrets".into(),
            reason: "r".into(),
        };
        assert_eq!(e.body()["rule"], "no-secrets");
        assert_eq!(e.body()["side"], "policy");
        let e = HttpError::Internal("secret detail".into());
        assert!(!e.body().to_string().contains("secret detail"));
    }
}
