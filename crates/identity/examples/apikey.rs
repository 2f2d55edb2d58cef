//! Generates an API key and prints the `[[identity.api_keys]]` block that stores its hash.
//!
//! ```text
//! cargo run -p portcullis-identity --example apikey -- ci-bot ci deployers,readers
//! ```
//! Arguments: key id, subject (default: the id), comma-separated groups (default: none).
//! The key is printed once on stderr; only its hash goes into the configuration.

use portcullis_identity::generate_api_key;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let id = args
        .next()
        .ok_or("usage: apikey <id> [subject] [group,group...]")?;
    let subject = args.next().unwrap_or_else(|| id.clone());
    let groups: Vec<String> = args
        .next()
        .map(|g| {
            g.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let generated = generate_api_key(&id)?;
    eprintln!(
        "API key (shown once, give it to the client): {}",
        generated.key.expose()
    );
    print!("{}", generated.toml_snippet(&subject, &groups));
    Ok(())
}
