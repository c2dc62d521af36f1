//! Client side: the HTTP client, replies, bursts and the background load with its records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Daemon;
use crate::{CONTEXT, poll};

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// One context answer as the client saw it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) elapsed: Duration,
}

impl Reply {
    pub(crate) fn source(&self) -> &str {
        self.body["cache"]["source"].as_str().unwrap_or("")
    }

    pub(crate) fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub(crate) fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// `POST /codette/context {"message": ...}` to the daemon at `url` (its context URL).
async fn ask_url(client: &reqwest::Client, url: &str, message: &str) -> Result<Reply, String> {
    let started = Instant::now();
    let resp = client
        .post(url)
        .json(&json!({ "message": message }))
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

pub(crate) async fn ask(daemon: &Daemon, message: &str) -> Reply {
    ask_url(daemon.client(), &daemon.url(CONTEXT), message)
        .await
        .unwrap_or_else(|e| panic!("{message:?}: {e}\n{}", daemon.logs()))
}

/// Asks and insists on a 200; returns the reply.
pub(crate) async fn ask_ok(daemon: &Daemon, message: &str) -> Reply {
    let reply = ask(daemon, message).await;
    assert_eq!(
        reply.status,
        200,
        "{message:?}: {reply:?}\n{}",
        daemon.logs()
    );
    reply
}

/// `n` concurrent asks of the same message; replies in completion order with their end.
pub(crate) async fn burst(daemon: &Daemon, message: &str, n: usize) -> Vec<(Reply, Instant)> {
    let url = daemon.url(CONTEXT);
    let client = client();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, message) = (client.clone(), url.clone(), message.to_owned());
            tokio::spawn(async move {
                let reply = ask_url(&client, &url, &message).await;
                (reply, Instant::now())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        let (reply, at) = task.await.expect("burst task");
        out.push((reply.unwrap_or_else(|e| panic!("burst: {e}")), at));
    }
    out
}

/// One request of a load task.
pub(crate) struct Record {
    pub(crate) started: Instant,
    pub(crate) elapsed: Duration,
    /// The `cache.source` of a 200, or what went wrong.
    pub(crate) outcome: Result<String, String>,
}

/// Client tasks looping on context requests until `finish`.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
}

impl Load {
    /// `tasks` loops; request `i` of task `t` asks `message(t, i)`.
    pub(crate) fn start(
        url: String,
        tasks: usize,
        message: impl Fn(usize, u64) -> String + Send + Sync + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let message = Arc::new(message);
        let client = client();
        let tasks = (0..tasks)
            .map(|t| {
                let (stop, completed, message) = (stop.clone(), completed.clone(), message.clone());
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut records = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = match ask_url(&client, &url, &message(t, i)).await {
                            Ok(r) if r.status == 200 => Ok(r.source().to_owned()),
                            Ok(r) => Err(format!("{} {}", r.status, r.body)),
                            Err(e) => Err(e),
                        };
                        records.push(Record {
                            started,
                            elapsed: started.elapsed(),
                            outcome,
                        });
                        completed.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    records
                })
            })
            .collect();
        Load {
            stop,
            completed,
            tasks,
        }
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have completed (at most `limit`).
    pub(crate) async fn wait_for(&self, n: u64, limit: Duration) {
        let target = self.completed() + n;
        poll(limit, async || (self.completed() >= target).then_some(())).await;
    }

    pub(crate) async fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load task"));
        }
        all
    }
}

/// Answers by source, and the failures.
pub(crate) fn tally(records: &[Record]) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut sources = BTreeMap::new();
    let mut failures = Vec::new();
    for r in records {
        match &r.outcome {
            Ok(source) => *sources.entry(source.clone()).or_insert(0) += 1,
            Err(e) => failures.push(e.clone()),
        }
    }
    (sources, failures)
}
