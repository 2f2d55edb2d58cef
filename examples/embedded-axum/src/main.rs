//! Runs the embedded example on `127.0.0.1:3000` (or `$PORT`) and prints a development token.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), String> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let dir = std::env::temp_dir().join("portcullis-embedded-axum");
    let service = portcullis_example_embedded_axum::build(&dir).await?;
    let token = service.token_for("alice", &["staff"])?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    println!("listening on http://127.0.0.1:{port}; try:");
    println!("  curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{port}/orders/7");
    axum::serve(
        listener,
        service
            .router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| e.to_string())
}
