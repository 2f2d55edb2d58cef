//! Turning a presented credential into a verified [`Identity`].

use crate::{BoxFuture, Identity, Result, Secret};

/// Verifies credentials presented by clients (a JWT or an API key carried in a
/// password field, a bearer header...). Implemented by the identity crate; adapters
/// only see this trait.
pub trait CredentialVerifier: Send + Sync + 'static {
    /// Verifies a credential. Errors are [`crate::Error::Client`] with a message
    /// that names what was wrong (expired, wrong audience...) and never echoes the credential.
    fn verify(&self, credential: Secret<String>) -> BoxFuture<'static, Result<Identity>>;
}
