//! The PostgREST-shaped test gateway behaves like PostgREST with JWTs (raw HTTP, no
//! client library): roles and claims per token, row-level security, `Prefer:
//! tx=rollback`, `Accept` object, error statuses, table reads and the /auth/v1/ endpoints.

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::common::postgrest::{
    JWT_SECRET, Postgrest, USER_PASSWORD, anon_key, service_role_key, sign_jwt_with, unix_now,
    user_token, user_token_expiring, verify_jwt,
};
use crate::common::{API_KEY, TestPostgres};

fn start() -> (TestPostgres, Postgrest) {
    let pg = TestPostgres::start();
    let rest = Postgrest::start(&pg, API_KEY);
    (pg, rest)
}

/// A request with `apikey` = the anon key and, when given, `Authorization: Bearer token`.
fn request(method: &str, url: String, token: Option<&str>) -> RequestBuilder {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut builder = Client::new()
        .request(method, url)
        .header("apikey", anon_key());
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    builder
}

fn rpc(rest: &Postgrest, function: &str, token: Option<&str>) -> RequestBuilder {
    request(
        "POST",
        format!("{}/rest/v1/rpc/{function}", rest.url()),
        token,
    )
}

fn body(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The helpers' tokens: HS256 with JWT_SECRET, the claims Supabase gives them.
#[test]
fn tokens_carry_supabase_claims() {
    let anon = verify_jwt(&anon_key()).unwrap();
    assert_eq!(anon["role"], "anon");
    assert!(anon.get("sub").is_none());
    assert!(anon["exp"].as_u64().unwrap() > unix_now() + 50 * 365 * 86_400);
    let user = verify_jwt(&user_token("user-a")).unwrap();
    assert_eq!(
        (&user["role"], &user["sub"]),
        (&json!("authenticated"), &json!("user-a"))
    );
    let exp = user["exp"].as_u64().unwrap();
    assert!((unix_now() + 3590..=unix_now() + 3600).contains(&exp));
    assert_eq!(
        verify_jwt(&service_role_key()).unwrap()["role"],
        "service_role"
    );
    let forged = sign_jwt_with(&json!({"role": "anon"}), "another secret entirely");
    assert_eq!(
        verify_jwt(&forged).unwrap_err(),
        "JWSError JWSInvalidSignature"
    );
    let expired = user_token_expiring("user-a", unix_now() - 120);
    assert_eq!(verify_jwt(&expired).unwrap_err(), "JWT expired");
    assert!(JWT_SECRET.len() >= 32);
}

/// Each credential runs as its role with its claims: a user sees their notes through RLS,
/// the anon key (as bearer or alone) none, the plain test key (superuser) all of them;
/// bad tokens and keys are 401 PGRST301 with a `WWW-Authenticate` challenge.
#[test]
fn calls_run_as_the_tokens_role_with_its_claims() {
    let (_pg, rest) = start();
    let (status, a) = body(
        rpc(&rest, "my_notes", Some(&user_token("user-a")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["uid"], "user-a");
    assert_eq!(a["notes"].as_array().unwrap().len(), 2);

    let (_, anon) = body(rpc(&rest, "my_notes", Some(&anon_key())).send().unwrap());
    assert_eq!(anon, json!({"uid": null, "notes": []}));
    // Without Authorization, the apikey JWT stands in for the bearer (as Supabase's gateway).
    let (status, alone) = body(rpc(&rest, "my_notes", None).send().unwrap());
    assert_eq!((status, &alone), (200, &anon));

    let superuser = Client::new()
        .post(format!("{}/rest/v1/rpc/my_notes", rest.url()))
        .header("apikey", API_KEY)
        .bearer_auth(API_KEY)
        .send()
        .unwrap();
    let (status, all) = body(superuser);
    assert_eq!(status, 200);
    assert_eq!(all["notes"].as_array().unwrap().len(), 3, "{all}");

    let (_, service) = body(
        rpc(&rest, "my_notes", Some(&service_role_key()))
            .send()
            .unwrap(),
    );
    assert_eq!(
        service["notes"].as_array().unwrap().len(),
        3,
        "BYPASSRLS: {service}"
    );

    let expired = user_token_expiring("user-a", unix_now() - 120);
    let forged = sign_jwt_with(&json!({"sub": "user-a", "role": "authenticated"}), "x");
    for (what, token) in [
        ("expired", expired.as_str()),
        ("forged", &forged),
        ("garbage", "x"),
    ] {
        let response = rpc(&rest, "my_notes", Some(token)).send().unwrap();
        let challenge = header(&response, "www-authenticate").unwrap_or_default();
        let (status, error) = body(response);
        assert_eq!(
            (status, &error["code"]),
            (401, &json!("PGRST301")),
            "{what}: {error}"
        );
        assert!(error.get("details").is_some() && error.get("hint").is_some());
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
    }
    // The apikey must be the plain key or the project's anon/service key.
    let wrong_key = Client::new()
        .post(format!("{}/rest/v1/rpc/my_notes", rest.url()))
        .header("apikey", user_token("user-a"))
        .bearer_auth(user_token("user-a"))
        .send()
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    assert_eq!(rest.calls_to("my_notes"), 9);
    assert_eq!(rest.calls(), 9);
}

/// A role without the privilege gets PostgREST's 401 (anon) or 403 (signed in).
#[test]
fn permission_denied_is_401_for_anon_and_403_for_a_user() {
    let (pg, rest) = start();
    pg.execute(
        "CREATE FUNCTION public.secret() RETURNS int LANGUAGE sql AS 'SELECT 42'; \
         REVOKE EXECUTE ON FUNCTION public.secret() FROM PUBLIC",
    );
    let (status, e) = body(rpc(&rest, "secret", Some(&anon_key())).send().unwrap());
    assert_eq!((status, &e["code"]), (401, &json!("42501")), "{e}");
    let (status, _) = body(
        rpc(&rest, "secret", Some(&user_token("user-a")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403);
    let superuser = Client::new()
        .post(format!("{}/rest/v1/rpc/secret", rest.url()))
        .header("apikey", API_KEY)
        .bearer_auth(API_KEY)
        .send()
        .unwrap();
    assert_eq!(body(superuser), (200, json!(42)));
}

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

/// /auth/v1/: health, password and refresh-token grants issuing real tokens, the user.
#[test]
fn auth_endpoints() {
    let (_pg, rest) = start();
    let auth = |method: &str, path: &str, token: Option<&str>| {
        request(method, format!("{}/auth/v1/{path}", rest.url()), token)
    };
    let (status, health) = body(auth("GET", "health", None).send().unwrap());
    assert_eq!((status, &health["name"]), (200, &json!("GoTrue")));
    let no_key = Client::new()
        .get(format!("{}/auth/v1/health", rest.url()))
        .send()
        .unwrap();
    assert_eq!(no_key.status(), 401);

    let login = |password: &str| {
        body(
            auth("POST", "token?grant_type=password", None)
                .json(&json!({"email": "user-a@example.com", "password": password}))
                .send()
                .unwrap(),
        )
    };
    let (status, session) = login(USER_PASSWORD);
    assert_eq!(status, 200, "{session}");
    let claims = verify_jwt(session["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&claims["sub"], &claims["role"]),
        (&json!("user-a"), &json!("authenticated"))
    );
    assert_eq!(session["user"]["id"], "user-a");
    assert_eq!(session["token_type"], "bearer");
    let (status, e) = login("wrong");
    assert_eq!(
        (status, &e["error_code"]),
        (400, &json!("invalid_credentials"))
    );

    let (status, refreshed) = body(
        auth("POST", "token?grant_type=refresh_token", None)
            .json(&json!({"refresh_token": session["refresh_token"]}))
            .send()
            .unwrap(),
    );
    assert_eq!(
        (status, &refreshed["user"]["email"]),
        (200, &json!("user-a@example.com"))
    );

    let token = session["access_token"].as_str().unwrap();
    let (status, user) = body(auth("GET", "user", Some(token)).send().unwrap());
    assert_eq!((status, &user["id"]), (200, &json!("user-a")));
    let (status, _) = body(auth("GET", "user", Some("x.y.z")).send().unwrap());
    assert_eq!(status, 403);
    // The session's token works on the RPC.
    let (_, notes) = body(rpc(&rest, "my_notes", Some(token)).send().unwrap());
    assert_eq!(notes["uid"], "user-a");
    assert_eq!(rest.requests_under("/auth/v1/").len(), 7);
}
