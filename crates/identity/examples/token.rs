//! Mints a development token from the `[identity.dev_signer]` of a configuration file, as
//! `portcullis token` does.
//!
//! ```text
//! cargo run -p portcullis-identity --example token -- --config portcullis.toml \
//!     --subject alice --groups dba,ops --ttl 1h
//! ```

use std::time::Duration;

use portcullis_identity::{DevSigner, IdentityConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config_path = None;
    let mut subject = None;
    let mut groups = Vec::new();
    let mut ttl = Duration::from_secs(3600);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => config_path = Some(value),
            "--subject" => subject = Some(value),
            "--groups" => {
                groups = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "--ttl" => ttl = humantime::parse_duration(&value)?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let path = config_path.ok_or("--config FILE is required")?;
    let subject = subject.ok_or("--subject is required")?;
    let document: toml::Table = toml::from_str(&std::fs::read_to_string(&path)?)?;
    // Accept a whole gateway configuration (with an [identity] table) or the table alone.
    let identity = match document.get("identity") {
        Some(table) => table.clone(),
        None => toml::Value::Table(document),
    };
    let config: IdentityConfig = identity.try_into()?;
    config.validate()?;
    let dev = config
        .dev_signer
        .as_ref()
        .ok_or("the configuration has no [identity.dev_signer]")?;
    let token = DevSigner::from_config(dev)?.mint(&subject, &groups, ttl)?;
    println!("{}", token.expose());
    Ok(())
}
