//! The syslog sink against a real rsyslogd (imtcp, octet-counted framing): the
//! daemon stops while sessions are recorded and starts again; every record ends up
//! in its output file, in order, with the header fields rsyslog parsed.
//! Needs `/usr/sbin/rsyslogd` (Debian package `rsyslog`; `.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use portcullis_siem::{SinkConfig, SinkKind, SinkSet, SinkState};
use portcullis_testkit::{Process, free_port, wait_for_tcp};
use serde_json::Value;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

struct Rsyslog {
    dir: PathBuf,
    port: u16,
    process: Option<Process>,
}

impl Rsyslog {
    fn new(dir: &Path) -> Rsyslog {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: install the Debian package rsyslog"
        );
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port().unwrap();
        let conf = format!(
            r#"global(workDirectory="{dir}")
module(load="imtcp")
template(name="fields" type="string" string="%pri%|%hostname%|%app-name%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="out") {{ action(type="omfile" file="{dir}/out.log" template="fields") }}
input(type="imtcp" port="{port}" ruleset="out")
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        Rsyslog {
            dir,
            port,
            process: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("rsyslogd.log")).unwrap();
        let mut cmd = Command::new(RSYSLOGD);
        cmd.arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut p = Process::spawn("rsyslogd", &mut cmd).unwrap();
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        if wait_for_tcp(addr, Duration::from_secs(30)).is_err() || !p.is_running() {
            panic!(
                "rsyslogd did not start: {}",
                std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
            );
        }
        self.process = Some(p);
    }

    /// Stops the daemon (SIGTERM: it writes out what it received).
    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("TERM", Duration::from_secs(30)).unwrap();
        }
    }

    /// The highest seq in the output file so far.
    fn max_seq(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("out.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(6, '|').nth(5))
            .filter_map(|m| serde_json::from_str::<Value>(m.trim_start()).ok())
            .filter_map(|v| v["seq"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// The lines rsyslog wrote: (PRI, HOSTNAME, APP-NAME, MSGID, SD, MSG as JSON).
    fn lines(&self) -> Vec<(String, String, String, String, String, Value)> {
        std::fs::read_to_string(self.dir.join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(6, '|').collect();
                assert_eq!(f.len(), 6, "{l}");
                let json = serde_json::from_str(f[5].trim_start())
                    .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {l}"));
                (
                    f[0].into(),
                    f[1].into(),
                    f[2].into(),
                    f[3].into(),
                    f[4].into(),
                    json,
                )
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslogd_receives_every_record_across_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::new(dir.path());
    rsyslog.start();
    let recorder = recorder(dir.path());
    let mut config = SinkConfig {
        address: Some(format!("127.0.0.1:{}", rsyslog.port)),
        hostname: Some("gw01".into()),
        batch_size: 6,
        ..SinkConfig::new("rsyslog", SinkKind::Syslog)
    };
    config.poll_interval = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    let sinks =
        SinkSet::start(recorder.store().clone(), &[config], &cursor_dir(dir.path())).unwrap();
    for i in 0..4 {
        record_session(&recorder, &format!("user{i}"), 2).await;
    }
    let first = head(&recorder);
    wait_delivered(&sinks, first).await;
    // Written is not yet read: let rsyslogd write everything out before it stops.
    wait_for("rsyslogd to write", || rsyslog.max_seq() == first).await;

    // rsyslogd stops while the sink is idle; sessions are recorded meanwhile.
    rsyslog.stop();
    for i in 0..5 {
        record_session(&recorder, &format!("outage{i}"), 2).await;
    }
    wait_for("the sink to retry", || {
        let s = &sinks.status()[0];
        s.state == SinkState::Retrying && s.consecutive_failures >= 2
    })
    .await;
    rsyslog.start();
    let last = head(&recorder);
    wait_delivered(&sinks, last).await;
    wait_for("rsyslogd to write", || rsyslog.max_seq() == last).await;
    sinks.shutdown().await;
    rsyslog.stop();

    let lines = rsyslog.lines();
    let seqs: Vec<u64> = lines.iter().map(|l| l.5["seq"].as_u64().unwrap()).collect();
    assert_in_order(&seqs, 1, last);
    let store = recorder.store();
    for (pri, host, app, msgid, sd, json) in &lines {
        let seq = json["seq"].as_u64().unwrap();
        let r = store.get(seq).unwrap().unwrap();
        assert_eq!(json["hash"], r.hash.to_hex());
        assert_eq!(host, "gw01");
        assert_eq!(app, "portcullis");
        assert_eq!(msgid, r.event.kind.name());
        assert_eq!(
            sd,
            &format!(
                "[portcullis@32473 seq=\"{seq}\" session=\"{}\"]",
                r.event.session
            )
        );
        let denied = json["event"]["decision"]["verdict"] == "deny";
        assert_eq!(pri, &(10 * 8 + if denied { 4 } else { 6 }).to_string());
    }
    recorder.shutdown().await.unwrap();
}
