//! Opening the store a configuration names.

use std::sync::Arc;

use crate::{EventStore, PgStore, RecordingConfig, Result, SledStore, StoreLocation};

/// Opens the store of `config` (validated first): the sled directory `path`,
/// or chain `chain` of the PostgreSQL `store` for writing.
pub fn open_store(config: &RecordingConfig) -> Result<Arc<dyn EventStore>> {
    config.validate()?;
    Ok(match config.location()? {
        StoreLocation::Sled(path) => Arc::new(SledStore::open(path)?),
        StoreLocation::Postgres { url, chain } => Arc::new(PgStore::open(url.expose(), &chain)?),
    })
}
