//! The gateway's credentials as PostgREST's: roles and claims per token, row-level
//! security, 401/403 for missing privileges, and the /auth/v1/ endpoints.

use reqwest::blocking::Client;
use serde_json::json;

use crate::common::API_KEY;
use crate::common::postgrest::{
    JWT_SECRET, USER_PASSWORD, anon_key, service_role_key, sign_jwt_with, unix_now, user_token,
    user_token_expiring, verify_jwt,
};
use crate::gateway::{body, header, request, rpc, start};

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
