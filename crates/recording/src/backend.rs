//! Opening the store a configuration names.

use std::sync::Arc;

use crate::{EventStore, PgStore, RecordingConfig, Result, SledStore, StoreLocation};

/// Opens the store of `config` (validated first): the sled directory `path`,
/// or chain `chain` of the PostgreSQL `store` for writing.
pub fn open_store(config: &RecordingConfig) -> Result<Arc<dyn EventStore>> {
    config.validate()?;
    #[cfg(feature = "discard-store")]
    if config.store.as_ref().map(|s| s.expose().as_str()) == Some(crate::discard::DISCARD_URL) {
        tracing::warn!("recording store \"discard:\": nothing is recorded (benchmark build)");
        return Ok(Arc::new(crate::discard::DiscardStore::default()));
    }
    Ok(match config.location()? {
        StoreLocation::Sled(path) => Arc::new(SledStore::open(path)?),
        StoreLocation::Postgres { url, chain } => Arc::new(PgStore::open(url.expose(), &chain)?),
    })
}
