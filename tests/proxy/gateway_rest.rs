//! The gateway's /rest/v1/ as PostgREST's: arguments, errors and content types,
//! `Prefer: tx=rollback` and read-only calls, sets and `Accept` object, table reads.

use serde_json::json;

use crate::common::postgrest::{anon_key, user_token};
use crate::gateway::{body, header, request, rpc, start};

/// GET arguments are text cast to the declared types, POST arguments JSON; a function
/// error is 400 with PostgREST's body; an unknown function or argument name is 404
/// PGRST202; an unsupported Accept is 406.
#[test]
fn arguments_errors_and_content_types() {
    let (pg, rest) = start();
    pg.execute(
        "CREATE FUNCTION public.add(a int, b int DEFAULT 10) RETURNS int \
         LANGUAGE sql IMMUTABLE AS 'SELECT a + b'; \
         CREATE FUNCTION public.echo(doc jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT doc'",
    );
    let url = |q: &str| format!("{}/rest/v1/rpc/add{q}", rest.url());
    let response = request("GET", url("?a=1&b=2"), Some(&anon_key()))
        .send()
        .unwrap();
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(body(response), (200, json!(3)));
    let posted = rpc(&rest, "add", None)
        .json(&json!({"a": 5}))
        .send()
        .unwrap();
    assert_eq!(body(posted), (200, json!(15)));
    let doc = json!({"nested": {"list": [1, "two", null]}});
    let echoed = rpc(&rest, "echo", None)
        .json(&json!({"doc": doc}))
        .send()
        .unwrap();
    assert_eq!(body(echoed), (200, doc));

    let (status, e) = body(rpc(&rest, "fail_always", None).send().unwrap());
    assert_eq!(status, 400);
    assert_eq!(
        e,
        json!({"code": "P0001", "message": "fail_always always fails",
               "details": "called on purpose by a test", "hint": "do not call fail_always"})
    );
    let (status, e) = body(
        rpc(&rest, "add", None)
            .json(&json!({"c": 1}))
            .send()
            .unwrap(),
    );
    assert_eq!((status, &e["code"]), (404, &json!("PGRST202")), "{e}");
    assert_eq!(
        e["message"],
        "Could not find the function public.add(c) in the schema cache"
    );
    let (status, e) = body(rpc(&rest, "nothing_here", None).send().unwrap());
    assert_eq!((status, &e["code"]), (404, &json!("PGRST202")));
    let (status, e) = body(
        rpc(&rest, "add", None)
            .header("accept", "text/csv")
            .json(&json!({"a": 1}))
            .send()
            .unwrap(),
    );
    assert_eq!((status, &e["code"]), (406, &json!("PGRST107")));
    let (status, _) = body(
        request("PUT", url(""), Some(&anon_key()))
            .json(&json!({"a": 1}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 405);
    assert_eq!(rest.calls_to("add"), 5);
}

/// `Prefer: tx=rollback` runs the call and rolls it back (with `Preference-Applied`);
/// GET and STABLE functions run read-only (a write is 405 / SQLSTATE 25006).
#[test]
fn tx_rollback_and_read_only_calls() {
    let (pg, rest) = start();
    pg.execute(
        "CREATE TABLE public.hits (n int); GRANT INSERT, SELECT ON public.hits TO anon; \
         CREATE FUNCTION public.hit() RETURNS bigint LANGUAGE sql VOLATILE AS \
           'INSERT INTO public.hits VALUES (1); SELECT count(*) FROM public.hits'",
    );
    let count = || pg.execute("SELECT count(*) FROM public.hits");
    let response = rpc(&rest, "hit", None)
        .header("prefer", "tx=rollback")
        .send()
        .unwrap();
    assert_eq!(
        header(&response, "preference-applied").as_deref(),
        Some("tx=rollback")
    );
    assert_eq!(body(response), (200, json!(1)));
    assert_eq!(count(), "0", "rolled back");
    let response = rpc(&rest, "hit", None).send().unwrap();
    assert_eq!(header(&response, "preference-applied"), None);
    assert_eq!(body(response), (200, json!(1)));
    assert_eq!(count(), "1", "committed");

    let get = request("GET", format!("{}/rest/v1/rpc/hit", rest.url()), None)
        .send()
        .unwrap();
    let (status, e) = body(get);
    assert_eq!((status, &e["code"]), (405, &json!("25006")), "{e}");
    assert_eq!(count(), "1");
}

/// Set-returning functions answer arrays with `Content-Range`; `Accept:
/// application/vnd.pgrst.object+json` unwraps exactly one row, else 406 PGRST116.
#[test]
fn sets_and_single_objects() {
    let (pg, rest) = start();
    pg.execute(
        "CREATE FUNCTION public.numbers(n int) RETURNS SETOF int LANGUAGE sql STABLE AS \
           'SELECT generate_series(1, n)'; \
         CREATE FUNCTION public.files() RETURNS TABLE(filename text, file_type text) \
           LANGUAGE sql STABLE AS \
           'SELECT filename, file_type FROM public.codette_files ORDER BY filename'",
    );
    let response = rpc(&rest, "numbers", None)
        .json(&json!({"n": 3}))
        .send()
        .unwrap();
    assert_eq!(header(&response, "content-range").as_deref(), Some("0-2/*"));
    assert_eq!(body(response), (200, json!([1, 2, 3])));
    let (status, files) = body(rpc(&rest, "files", None).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        files[0],
        json!({"filename": "audio_analysis.py", "file_type": "python"})
    );

    let object = "application/vnd.pgrst.object+json";
    let one = rpc(&rest, "numbers", None)
        .header("accept", object)
        .json(&json!({"n": 1}))
        .send()
        .unwrap();
    assert_eq!(
        header(&one, "content-type").as_deref(),
        Some("application/vnd.pgrst.object+json; charset=utf-8")
    );
    assert_eq!(body(one), (200, json!(1)));
    let many = rpc(&rest, "numbers", None)
        .header("accept", object)
        .json(&json!({"n": 2}))
        .send()
        .unwrap();
    let (status, e) = body(many);
    assert_eq!((status, &e["code"]), (406, &json!("PGRST116")), "{e}");
    // A scalar function is its own single object.
    let context = rpc(&rest, "get_codette_context", None)
        .header("accept", object)
        .json(&json!({"input_prompt": "reverb"}))
        .send()
        .unwrap();
    let (status, v) = body(context);
    assert_eq!(status, 200);
    assert!(v["snippets"].is_array());
}

/// `GET /rest/v1/{table}` reads rows as the caller (RLS applies) with `Content-Range`.
#[test]
fn table_reads() {
    let (_pg, rest) = start();
    let response = request(
        "GET",
        format!("{}/rest/v1/codette?select=*", rest.url()),
        Some(&anon_key()),
    )
    .send()
    .unwrap();
    assert_eq!(
        header(&response, "content-range").as_deref(),
        Some("0-20/*")
    );
    let (status, rows) = body(response);
    assert_eq!(status, 200);
    assert_eq!(rows.as_array().unwrap().len(), 21);
    assert!(rows[0]["FileName"].is_string() && rows[0]["ContentSnippet"].is_string());

    let filtered = request(
        "GET",
        format!(
            "{}/rest/v1/codette?select=FileName&FileName=eq.drum_eq.md",
            rest.url()
        ),
        None,
    )
    .send()
    .unwrap();
    assert_eq!(body(filtered), (200, json!([{"FileName": "drum_eq.md"}])));

    let page = request(
        "GET",
        format!(
            "{}/rest/v1/codette?select=FileName&order=FileName.desc&limit=2&offset=1",
            rest.url()
        ),
        None,
    )
    .send()
    .unwrap();
    assert_eq!(header(&page, "content-range").as_deref(), Some("1-2/*"));
    assert_eq!(
        body(page),
        (
            200,
            json!([{"FileName": "vocal_compression.md"}, {"FileName": "stereo_imaging.md"}])
        )
    );

    let notes = |token: Option<&str>| {
        body(
            request(
                "GET",
                format!("{}/rest/v1/notes?select=owner", rest.url()),
                token,
            )
            .send()
            .unwrap(),
        )
    };
    assert_eq!(
        notes(Some(&user_token("user-b"))),
        (200, json!([{"owner": "user-b"}]))
    );
    assert_eq!(notes(None), (200, json!([])));
    let (status, e) = body(
        request("GET", format!("{}/rest/v1/nope?select=*", rest.url()), None)
            .send()
            .unwrap(),
    );
    assert_eq!((status, &e["code"]), (404, &json!("PGRST205")));
    assert_eq!(rest.calls(), 0, "table reads are not RPC calls");
    assert_eq!(rest.requests_under("/rest/v1/codette").len(), 3);
    let first = &rest.requests_under("/rest/v1/codette")[0];
    assert_eq!(first.query, [("select".to_string(), "*".to_string())]);
    assert_eq!(first.header("apikey"), Some(anon_key().as_str()));
}
