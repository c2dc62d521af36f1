//! The live dashboard's routes without a browser: security and cache headers, versioned
//! assets with `ETag`/304, a frame a second with the same counts as the JSON routes,
//! history, resuming after `Last-Event-ID`, the stream bound, and `enabled = false`.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::client::ask_ok;
use crate::common::{Daemon, sample_origin};
use crate::{config, memory, run};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = d.client().get(d.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("request")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads SSE frames (`id` and `data` lines) from a response until `n` have come.
async fn frames(response: reqwest::Response, n: usize) -> Vec<(u64, Value)> {
    let mut body = response.bytes_stream();
    let (mut text, mut out) = (String::new(), Vec::new());
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a frame within 5 s")
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_owned))
            };
            if let (Some(id), Some(data)) = (field("id:"), field("data:")) {
                out.push((
                    id.trim().parse().unwrap(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
    }
    out
}

/// The page and its assets: strict headers, no cache for the page, a year for assets
/// (304 on a matching ETag, 404 for an old version).
#[test]
fn the_page_and_assets_carry_their_headers() {
    run(async {
        let d = Daemon::start(&config(&[memory(300)], &sample_origin()));
        let page = get(&d, "/dashboard", &[]).await;
        assert_eq!(page.status(), 200);
        assert_eq!(header(&page, "content-security-policy"), CSP);
        assert_eq!(header(&page, "x-content-type-options"), "nosniff");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        assert_eq!(header(&page, "cache-control"), "no-store");
        let html = page.text().await.unwrap();
        let js = html
            .split('"')
            .find(|s| s.starts_with("/dashboard/assets/") && s.ends_with("/dashboard.js"))
            .expect("the script's URL")
            .to_owned();
        let asset = get(&d, &js, &[]).await;
        assert_eq!(asset.status(), 200);
        assert!(header(&asset, "content-type").starts_with("text/javascript"));
        assert_eq!(
            header(&asset, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&asset, "content-security-policy"), CSP);
        let etag = header(&asset, "etag").to_owned();
        let again = get(&d, &js, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), 304);
        assert!(again.bytes().await.unwrap().is_empty());
        let old = get(&d, "/dashboard/assets/000000000000/dashboard.js", &[]).await;
        assert_eq!(old.status(), 404);
        assert_eq!(
            old.json::<Value>().await.unwrap()["error"]["code"],
            "not_found"
        );
    });
}

/// A frame a second whose totals match `/codette/cache/metrics`; history keeps them;
/// `Last-Event-ID` resumes after a frame with what came since; past `max_streams`, 503.
#[test]
fn events_history_resume_and_the_stream_bound() {
    run(async {
        let text = format!(
            "{}[dashboard]\nmax_streams = 2\n\n",
            config(&[memory(300)], &sample_origin())
        );
        let d = Daemon::start(&text);
        for m in ["how to use reverb", "how to use reverb", "compression"] {
            ask_ok(&d, m).await;
        }
        let stream = get(&d, "/dashboard/events", &[]).await;
        assert_eq!(stream.status(), 200);
        assert_eq!(header(&stream, "content-type"), "text/event-stream");
        assert_eq!(header(&stream, "content-security-policy"), CSP);
        let live = frames(stream, 2).await;
        assert!(live[1].0 > live[0].0, "ids increase");
        let (_, metrics) = d.get_json("/codette/cache/metrics").await;
        let p = &metrics["performance_dashboard"];
        let totals = &live[1].1["totals"];
        assert_eq!(totals["requests"], p["total_requests"]);
        assert_eq!(totals["hits"], p["successful_hits"]);
        assert_eq!(totals["misses"], p["cache_misses"]);
        assert_eq!(live[1].1["tiers"][0]["tier"], "memory");

        let (code, history) = d.get_json("/dashboard/history").await;
        assert_eq!(code, 200);
        let ids: Vec<u64> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_u64().unwrap())
            .collect();
        assert!(ids.contains(&live[0].0), "{ids:?}");
        // Resume after the first live frame: the second comes at once, from the ring.
        let resumed = get(
            &d,
            "/dashboard/events",
            &[("last-event-id", &live[0].0.to_string())],
        )
        .await;
        let first = frames(resumed, 1).await;
        assert_eq!(
            first[0].0, live[1].0,
            "resumed right after the last frame seen"
        );
        // An id from a clock ahead of this daemon's (a predecessor's, or made up) does
        // not hold the stream back: it follows the live frames.
        let ahead = get(&d, "/dashboard/events?after=99999999999999", &[]).await;
        let next = frames(ahead, 1).await;
        assert!(next[0].0 > live[1].0, "{:?}", next[0].0);

        // Two streams open (the bound), a third is refused, clearly.
        let (a, b) = (
            get(&d, "/dashboard/events", &[]).await,
            get(&d, "/dashboard/events", &[]).await,
        );
        let refused = get(&d, "/dashboard/events", &[]).await;
        assert_eq!(refused.status(), 503);
        assert_eq!(header(&refused, "retry-after"), "5");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_streams");
        drop((a, b));
        // Closed streams give their places back.
        let mut reopened = false;
        for _ in 0..50 {
            if get(&d, "/dashboard/events", &[]).await.status() == 200 {
                reopened = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reopened, "closed streams kept their places");
    });
}

/// `[dashboard] enabled = false`: every dashboard route is a JSON 404.
#[test]
fn a_disabled_dashboard_is_not_found() {
    run(async {
        let text = format!(
            "{}[dashboard]\nenabled = false\n\n",
            config(&[memory(300)], &sample_origin())
        );
        let d = Daemon::start(&text);
        for path in ["/dashboard", "/dashboard/history", "/dashboard/events"] {
            let r = get(&d, path, &[]).await;
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"]["code"],
                "not_found"
            );
        }
    });
}
