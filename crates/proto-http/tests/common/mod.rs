//! Test harness: a real upstream axum app, an nginx upstream, a resetting upstream, the
//! gateway with a real recorder, and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{any, get};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::{Command, Event, EventKind, Pipeline};
use portcullis_identity::{Authenticator, IdentityConfig, generate_api_key};
use portcullis_proto_http::{HttpGateway, HttpGatewayConfig};
use portcullis_recording::{Durability, Recorder, RecordingConfig};
use tokio::net::TcpListener;

pub const UPSTREAM_TOKEN: &str = "upstream-bearer-7f3a9c";
pub const NGINX_PASSWORD: &str = "nginx-basic-pw-51d2";
pub const HEADER_KEY: &str = "header-cred-c0ffee";

pub async fn free_listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn echo(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap_or("?").to_owned());
    let json = serde_json::json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "authorization": h("authorization"),
        "x_api_key": h("x-api-key"),
        "x_service_key": h("x-service-key"),
        "host": h("host"),
        "body": String::from_utf8_lossy(&body),
        "password": "upstream-password-in-body",
    });
    (
        [
            ("content-type", "application/json"),
            ("x-internal", "internal-id-123"),
        ],
        json.to_string(),
    )
}

/// The upstream application.
pub fn upstream_app() -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route(
            "/users",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"users":[{"name":"Ann","email":"ann@example.com","phones":[{"n":"1","secret":"s1"}]},{"name":"Bob","email":"bob@example.com","auth":{"password":"hunter2"}}],"groups":[[{"email":"deep@example.com"}]],"total":2}"#,
                )
            }),
        )
        .route(
            "/chunked",
            get(|| async {
                // The e-mail value is split across chunks, inside the string and inside an escape.
                let parts: Vec<&'static str> = vec![
                    r#"{"users":[{"name":"Ann","em"#,
                    r#"ail":"ann.very.long@exa"#,
                    r#"mple.com\"#,
                    r#""x"},{"email":"#,
                    r#""bob@example.com"}],"note":"kept"}"#,
                ];
                let stream = futures::stream::iter(parts).then(|p| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(Bytes::from_static(p.as_bytes()))
                });
                ([("content-type", "application/json")], Body::from_stream(stream))
            }),
        )
        .route(
            "/text",
            get(|| async { ([("content-type", "text/plain")], "plain text body") }),
        )
        .route(
            "/big",
            get(|| async {
                // 200 MiB in 64 KiB chunks, generated as it is read.
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let stream = futures::stream::iter(0..3200).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                ([("content-type", "application/octet-stream")], Body::from_stream(stream))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "too late"
            }),
        )
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade, headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                ws.on_upgrade(move |mut socket| async move {
                    let _ = socket.send(Message::Text(format!("auth:{auth}").into())).await;
                    while let Some(Ok(msg)) = socket.recv().await {
                        let reply = match msg {
                            Message::Text(t) => Message::Text(format!("echo:{t}").into()),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if socket.send(reply).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
}

use futures::StreamExt;

pub async fn start_upstream() -> SocketAddr {
    let (l, a) = free_listener().await;
    tokio::spawn(async move { axum::serve(l, upstream_app()).await });
    a
}

/// An upstream that reads a request head and resets the connection.
pub async fn start_resetter() -> SocketAddr {
    let (l, a) = free_listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                #[allow(deprecated)]
                let _ = s.set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    a
}

/// nginx run as a child process with its own configuration on a free port.
pub struct Nginx {
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Starts nginx; `extra` is put inside the `server` block.
// `Nginx::drop` kills and waits for the child.
#[allow(clippy::zombie_processes)]
pub async fn start_nginx(extra: &str) -> Nginx {
    let bin = nginx_binary().expect("nginx is installed (apt-get install nginx-light)");
    let dir = tempfile::tempdir().unwrap();
    let (l, addr) = free_listener().await;
    drop(l);
    let conf = format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;
    server {{
        listen {addr} reuseport;
        location /nginx/ {{
            default_type application/json;
            return 200 '{{"from":"nginx","uri":"$request_uri","authorization":"$http_authorization","x_api_key":"$http_x_api_key"}}';
        }}
        {extra}
    }}
}}
"#,
        dir = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Nginx {
                addr,
                child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not start");
}

pub struct Harness {
    pub addr: SocketAddr,
    pub auth: Authenticator,
    pub recorder: Recorder,
    pub store_dir: tempfile::TempDir,
    pub token: String,
    pub api_key: String,
    pub upstream: SocketAddr,
    pub nginx: Nginx,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), portcullis_proto_http::HttpError>>>,
}

impl Harness {
    /// Stops the gateway and waits for `serve` to return (at most 10 s).
    pub async fn shut_down(mut self) -> Result<(), portcullis_proto_http::HttpError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let served = self.served.take().expect("served");
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("serve returned within 10 s")
            .expect("serve did not panic")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn gateway_toml(
    upstream: SocketAddr,
    nginx: SocketAddr,
    resetter: SocketAddr,
    dead: SocketAddr,
) -> String {
    format!(
        r#"
workers = 2
record_body_bytes = 512
header_read_timeout = "1s"
max_header_bytes = 16384

[[routes]]
host = "nginx.test"
target = "nginx"

[[routes]]
path_prefix = "/app"
strip_prefix = true
target = "app"

[[routes]]
path_prefix = "/hdr"
strip_prefix = true
target = "hdr"

[[routes]]
path_prefix = "/reset"
target = "reset"

[[routes]]
path_prefix = "/dead"
target = "dead"

[targets.app]
upstream = "http://{upstream}"
allowed_groups = ["dev"]
request_timeout = "500ms"
credential = {{ type = "bearer", token = {{ value = "{UPSTREAM_TOKEN}" }} }}
record_headers = ["user-agent", "content-type", "x-trace"]
strip_headers = ["cookie"]

[targets.app.mask]
json = ["$.users[*].email", "**.password", "$.groups[*][*].email"]
headers = ["x-internal"]

[targets.app.policy]
default = "deny"
[[targets.app.policy.rules]]
id = "no-admin"
paths = ["/admin/**"]
action = "deny"
reason = "the admin API is off limits"
[[targets.app.policy.rules]]
id = "deletes-need-review"
methods = ["DELETE"]
action = "review"
approvers = ["leads"]
[[targets.app.policy.rules]]
id = "no-dry-run-posts"
methods = ["POST"]
query = {{ dryRun = "*" }}
action = "deny"
[[targets.app.policy.rules]]
id = "app-access"
methods = ["GET", "POST", "PUT"]
paths = ["/echo", "/echo/**", "/users", "/chunked", "/text", "/big", "/slow", "/ws", "/items/{{id}}"]
action = "allow"

[targets.hdr]
upstream = "http://{upstream}"
allowed_groups = ["dev"]
credential = {{ type = "header", name = "x-service-key", value = {{ value = "{HEADER_KEY}" }} }}
policy = {{ default = "allow" }}
mask = {{ json = ["**.password"] }}

[targets.nginx]
upstream = "http://{nginx}"
allowed_groups = ["dev", "ops"]
credential = {{ type = "basic", username = "gateway", password = {{ value = "{NGINX_PASSWORD}" }} }}
policy = {{ default = "allow" }}

[targets.reset]
upstream = "http://{resetter}"
allowed_groups = ["dev"]
retries = 0
policy = {{ default = "allow" }}

[targets.dead]
upstream = "http://{dead}"
allowed_groups = ["dev"]
connect_timeout = "300ms"
policy = {{ default = "allow" }}
"#
    )
}

pub async fn start_with(pipeline_hook: impl FnOnce(Pipeline) -> Pipeline) -> Harness {
    let upstream = start_upstream().await;
    let nginx = start_nginx("").await;
    let resetter = start_resetter().await;
    let (dead_l, dead) = free_listener().await;
    drop(dead_l);

    let key = generate_api_key("ci").unwrap();
    let identity: IdentityConfig = toml::from_str(&format!(
        r#"
        [dev_signer]
        issuer = "portcullis-dev"
        audience = "portcullis"
        secret = "a development secret of 32+ bytes"

        [[api_keys]]
        id = "ci"
        hash = "{}"
        subject = "ci-bot"
        groups = ["dev"]
        "#,
        key.hash
    ))
    .unwrap();
    let auth = Authenticator::from_config(&identity).await.unwrap();
    let token = auth
        .mint_dev_token("alice", &["dev".into()], Duration::from_secs(600))
        .unwrap()
        .expose()
        .clone();

    let store_dir = tempfile::tempdir().unwrap();
    let mut rc = RecordingConfig::new(store_dir.path().join("rec"));
    rc.durability = Durability::Batched;
    rc.flush_interval = Duration::from_millis(5);
    let recorder = Recorder::open(&rc).unwrap();

    let config =
        HttpGatewayConfig::from_toml(&gateway_toml(upstream, nginx.addr, resetter, dead)).unwrap();
    let pipeline = pipeline_hook(Pipeline::new(Arc::new(recorder.clone())));
    let gateway = HttpGateway::new(config, auth.clone(), pipeline).unwrap();
    let (l, addr) = free_listener().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(l, async move {
        let _ = stopped.await;
    }));
    Harness {
        addr,
        auth,
        recorder,
        store_dir,
        token,
        api_key: key.key.expose().clone(),
        upstream,
        nginx,
        stop: Some(stop),
        served: Some(served),
    }
}

pub async fn start() -> Harness {
    start_with(|p| p).await
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with the test token (or `auth` if given; `Some("")` sends none).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut b = http::Request::builder().method(method).uri(self.url(path));
        match auth {
            None => b = b.header("authorization", format!("Bearer {}", self.token)),
            Some("") => {}
            Some(a) => b = b.header("authorization", a),
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = client().request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None, &[], "").await
    }

    /// Every recorded event, in order; a command recorded with its result reads as the
    /// command, then the result.
    pub async fn events(&self) -> Vec<Event> {
        // Completions are submitted when bodies end; give the writer a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.recorder.flush().await.unwrap();
        let store = self.recorder.store();
        store
            .scan(1, 1_000_000)
            .unwrap()
            .flat_map(|r| {
                let (event, result) = r.unwrap().event.split_result();
                std::iter::once(event).chain(result)
            })
            .collect()
    }

    /// The events of the latest request to `path` (the path the client sent): its session's
    /// `session_opened`, its `command` and `command_result`, and the session's
    /// `session_closed` once recorded.
    pub async fn session_for(&self, path: &str) -> Vec<EventKind> {
        let events = self.events().await;
        let (id, seq) = events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::Command {
                    seq,
                    command:
                        Command::Http {
                            path: forwarded,
                            details,
                            ..
                        },
                    ..
                } if details.get("client_path").unwrap_or(forwarded) == path => {
                    Some((e.session, *seq))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no request for {path}"));
        events
            .into_iter()
            .filter(|e| e.session == id)
            .map(|e| e.kind)
            .filter(|k| match k {
                EventKind::Command { seq: s, .. } | EventKind::CommandResult { seq: s, .. } => {
                    *s == seq
                }
                EventKind::SessionOpened { .. } | EventKind::SessionClosed { .. } => true,
                _ => false,
            })
            .collect()
    }

    /// Like [`Harness::session_for`], waiting (up to 5 s) until the session has closed.
    pub async fn closed_session_for(&self, path: &str) -> Vec<EventKind> {
        for _ in 0..50 {
            let session = self.session_for(path).await;
            if session
                .last()
                .is_some_and(|k| matches!(k, EventKind::SessionClosed { .. }))
            {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the session of {path} did not close")
    }

    /// All bytes under the recording directory (to grep for secrets).
    pub fn store_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut stack = vec![self.store_dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    all.extend(std::fs::read(p).unwrap());
                }
            }
        }
        all
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
