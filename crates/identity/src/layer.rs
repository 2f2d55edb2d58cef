//! [`AuthLayer`]: a tower layer that authenticates HTTP requests.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use portcullis_core::Side;
use tower::{Layer, Service};

use crate::authenticator::Authenticator;
use crate::error::IdentityError;

/// Authenticates each request from `Authorization: Bearer <jwt | api key>` (or the configured
/// extra header), puts the [`portcullis_core::Identity`] into the request extensions, removes
/// the credential headers and calls the inner service. Failures are answered with `401`, a
/// `WWW-Authenticate: Bearer` challenge and a JSON body `{"error": code, "message": text}`
/// that never repeats the credential.
///
/// Works with any `http` service whose response body can be built from a `String`
/// (for example axum's `Body`).
#[derive(Clone)]
pub struct AuthLayer {
    auth: Authenticator,
    header: Option<HeaderName>,
    realm: Arc<str>,
    on_refusal: Option<RefusalHook>,
}

/// Called for every request the layer refuses, with the error and the request's extensions
/// (for example to record the refusal with the client address). It must not block.
pub type RefusalHook = Arc<dyn Fn(&IdentityError, &http::Extensions) + Send + Sync>;

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("header", &self.header)
            .field("realm", &self.realm)
            .finish()
    }
}

impl AuthLayer {
    /// A layer using `auth`, reading the extra header configured as `identity.header` if any,
    /// with realm `portcullis`.
    pub fn new(auth: Authenticator) -> Self {
        let header = auth.credential_header().cloned();
        Self {
            auth,
            header,
            realm: Arc::from("portcullis"),
            on_refusal: None,
        }
    }

    /// Also accepts the credential in `name` (used when `Authorization` carries no bearer credential).
    pub fn with_header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Calls `hook` for every refused request (before the 401/503 answer is sent).
    pub fn on_refusal(
        mut self,
        hook: impl Fn(&IdentityError, &http::Extensions) + Send + Sync + 'static,
    ) -> Self {
        self.on_refusal = Some(Arc::new(hook));
        self
    }

    /// Sets the realm announced in `WWW-Authenticate`.
    pub fn with_realm(mut self, realm: &str) -> Self {
        self.realm = Arc::from(realm.replace(['"', '\\'], ""));
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

/// Takes the credential out of the headers and removes every credential header.
fn take_credential(headers: &mut HeaderMap, extra: Option<&HeaderName>) -> Option<String> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
    let from_extra = extra.and_then(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    });
    // The target never sees the caller's credentials; the gateway injects its own.
    headers.remove(AUTHORIZATION);
    if let Some(name) = extra {
        headers.remove(name);
    }
    bearer.or(from_extra).filter(|c| !c.is_empty())
}

/// Builds the refusal: 401 for credential problems, 503 when the gateway cannot judge.
pub(crate) fn refusal<B: From<String>>(error: &IdentityError, realm: &str) -> Response<B> {
    let client = error.side() == Side::Client;
    let status = if client {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let message = if client {
        error.to_string()
    } else {
        "authentication is temporarily unavailable".to_owned()
    };
    let body = serde_json::json!({ "error": error.code(), "message": message }).to_string();
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if client {
        let description: String = message
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
            .collect();
        let challenge = if matches!(error, IdentityError::MissingCredential) {
            format!("Bearer realm=\"{realm}\"")
        } else {
            format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
            )
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let credential = take_credential(request.headers_mut(), layer.header.as_ref());
        Box::pin(async move {
            let result = match credential {
                Some(credential) => layer.auth.authenticate(&credential).await,
                None => Err(IdentityError::MissingCredential),
            };
            match result {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::debug!(code = error.code(), %error, "request refused");
                    if let Some(hook) = &layer.on_refusal {
                        hook(&error, request.extensions());
                    }
                    Ok(refusal(&error, &layer.realm))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_and_strips_credentials() {
        let extra = HeaderName::from_static("x-api-key");
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        h.insert(&extra, HeaderValue::from_static("pk_x_y"));
        assert_eq!(
            take_credential(&mut h, Some(&extra)).as_deref(),
            Some("abc")
        );
        assert!(h.is_empty());

        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        h.insert(&extra, HeaderValue::from_static("pk_x_y"));
        assert_eq!(
            take_credential(&mut h, Some(&extra)).as_deref(),
            Some("pk_x_y")
        );
        assert!(h.is_empty());
    }

    #[test]
    fn refusal_shape() {
        let r: Response<String> = refusal(&IdentityError::Expired, "p");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"p\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let r: Response<String> = refusal(&IdentityError::MissingCredential, "p");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"p\"");
        let r: Response<String> = refusal(&IdentityError::Internal("x".into()), "p");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!r.body().contains('x'));
    }
}
