//! A fresh database on the machine's shared PostgreSQL server, dropped on drop.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Psql, Result, TestkitError};

/// Host of the shared server (`127.0.0.1`, trust authentication for `postgres`).
pub const SHARED_PG_HOST: &str = "127.0.0.1";
/// Port of the shared server.
pub const SHARED_PG_PORT: u16 = 5432;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database created with a unique name on the shared server
/// (`127.0.0.1:5432`, user `postgres`, trust authentication), for tests that need
/// an empty database rather than a private cluster. Dropping it drops the
/// database, disconnecting whoever is still connected.
#[derive(Debug)]
pub struct ScratchDb {
    name: String,
}

fn admin() -> Psql {
    Psql::new("psql", SHARED_PG_PORT, "postgres", "postgres")
}

impl ScratchDb {
    /// Creates a database named `portcullis_<prefix>_<pid>_<n>`.
    pub fn create(prefix: &str) -> Result<ScratchDb> {
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(TestkitError::Options(format!(
                "database prefix {prefix:?}: lowercase letters, digits and '_' only"
            )));
        }
        let name = format!(
            "portcullis_{prefix}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin().run(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin().run(&format!("CREATE DATABASE {name}"))?;
        Ok(ScratchDb { name })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@{SHARED_PG_HOST}:{SHARED_PG_PORT}/{}",
            self.name
        )
    }

    /// A `psql` client connected to the database as `postgres`.
    pub fn psql(&self) -> Psql {
        admin().dbname(&self.name)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = admin().run(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
