//! The HTTP ceiling: a bare warp server answering `GET /codette/context` and
//! `GET|POST /rest/v1/rpc/{function}` with the same 2 KB JSON body from memory and no
//! cache logic. What the daemon's memory hits are measured against; for the proxy's
//! bench it is the upstream as well (`scripts/bench-proxy.sh`).

use std::net::SocketAddr;

use warp::Filter;

/// A context-shaped answer of about 2 KB.
pub fn body() -> String {
    let snippet = "Use reverb on a send bus rather than an insert so several tracks share one space; high-pass the return around 200 Hz.";
    let snippets: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"filename":"mixing_guide_{i}.md","snippet":"{snippet}"}}"#))
        .collect();
    format!(
        r#"{{"context":{{"snippets":[{}],"file":null,"chat_history":[]}},"cache":{{"hit":true,"source":"ceiling","key":"context:367ac8be2a4e9fccd1f5aa007d810371","age_seconds":0.00}},"timestamp":"2026-01-01T00:00:00.000000Z"}}"#,
        snippets.join(",")
    )
}

/// Serves until the process is stopped.
pub async fn serve(listen: SocketAddr) {
    let body: &'static str = Box::leak(body().into_boxed_str());
    let reply = move || warp::reply::with_header(body, "content-type", "application/json");
    let context = warp::path!("codette" / "context")
        .and(warp::get())
        .map(reply);
    let rpc = warp::path!("rest" / "v1" / "rpc" / String)
        .and(warp::get().or(warp::post()).unify())
        .map(move |_function: String| reply());
    let route = context.or(rpc);
    eprintln!(
        "ceiling server on http://{listen} ({} byte answers)",
        body.len()
    );
    warp::serve(route).run(listen).await;
}

#[cfg(test)]
mod tests {
    /// The ceiling answer is valid JSON of about 2 KB.
    #[test]
    fn body_is_two_kilobytes_of_json() {
        let b = super::body();
        assert!((1800..2400).contains(&b.len()), "{}", b.len());
        serde_json::from_str::<serde_json::Value>(&b).unwrap();
    }
}
