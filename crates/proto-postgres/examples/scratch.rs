#![allow(missing_docs, clippy::unwrap_used)]
use portcullis_core::*;
use portcullis_proto_postgres::*;
use std::sync::{Arc, Mutex};

struct V;
impl CredentialVerifier for V {
    fn verify(&self, c: Secret<String>) -> BoxFuture<'static, Result<Identity>> {
        let ok = c.expose() == "letmein";
        Box::pin(async move {
            if ok {
                Ok(Identity {
                    subject: "alice".into(),
                    groups: vec!["dba".into()],
                    method: AuthMethod::Jwt,
                    issuer: None,
                    expires_at: None,
                })
            } else {
                Err(Error::Client("bad token".into()))
            }
        })
    }
}
#[derive(Default)]
struct M(Mutex<Vec<Event>>);
impl EventSink for M {
    fn record(&self, e: Event) -> BoxFuture<'static, Result<()>> {
        println!("{}", serde_json::to_string(&e).unwrap());
        self.0.lock().unwrap().push(e);
        Box::pin(async { Ok(()) })
    }
    fn submit(&self, e: Event) -> Result<()> {
        println!("{}", serde_json::to_string(&e).unwrap());
        self.0.lock().unwrap().push(e);
        Ok(())
    }
}
struct DenyDrop;
impl CommandPolicy for DenyDrop {
    fn decide(&self, _s: &SessionContext, c: &Command) -> Result<Decision> {
        if c.summary().to_lowercase().contains("drop") {
            Ok(Decision::deny("no-drop", "DROP is not allowed"))
        } else {
            Ok(Decision::allow("ok", "ok"))
        }
    }
}
#[tokio::main]
async fn main() {
    let up: UpstreamConfig = toml::from_str(
        r#"address = "127.0.0.1:5432"
database = "test"
user = "postgres""#,
    )
    .unwrap();
    let t = Target {
        name: "test".into(),
        protocol: Protocol::Postgres,
        upstream: up.address.clone(),
        allowed_groups: vec!["dba".into()],
    };
    let p = Pipeline::new(Arc::new(M::default())).with_policy(Arc::new(DenyDrop));
    let gw = PostgresGateway::builder(ListenerSettings::default(), Arc::new(V), p)
        .target(t, up)
        .unwrap()
        .build();
    let l = tokio::net::TcpListener::bind("127.0.0.1:6543")
        .await
        .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    gw.serve(l, rx).await.unwrap();
}
