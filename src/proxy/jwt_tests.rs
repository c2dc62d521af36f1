//! Tests of `jwt.rs`: real signatures, and a JWKS served on loopback. Longer than
//! ~400 lines: the fixed test key material and the JWKS server take a quarter of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// Test-only P-256 key pairs (generated once with `openssl genpkey`), with the
/// public halves as JWK coordinates.
const K1_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8Tm2UOXRIYYxlmNi
+EpruxSwpIGEKud6HRys5V53c9+hRANCAAQpOK2OXB+c/AeEw5DYibNoDlaS7Obg
H9a8+oNeNKaxvDeOov9EAcDD80fi3cymNo7bfar1zWijSRI6hPTAkx2t
-----END PRIVATE KEY-----
";
const K1_X: &str = "KTitjlwfnPwHhMOQ2ImzaA5Wkuzm4B_WvPqDXjSmsbw";
const K1_Y: &str = "N46i_0QBwMPzR-LdzKY2jtt9qvXNaKNJEjqE9MCTHa0";
const K2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWY1+kVbrGBSfPF0a
hsvY9zEjQk8B/it13LE81EN0FPOhRANCAASubRWC8byXX3X9nfFaqtBiUJ1q73Cd
W3M/m5ETpVt6E0oaf710IKXk/H6zKHQaqlm4Y1AT2n6s2SKQuj9TPhnH
-----END PRIVATE KEY-----
";
const K2_X: &str = "rm0VgvG8l191_Z3xWqrQYlCdau9wnVtzP5uRE6VbehM";
const K2_Y: &str = "Shp_vXQgpeT8frModBqqWbhjUBPafqzZIpC6P1M-Gcc";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({"role": "authenticated", "sub": "user-1", "aud": "authenticated", "exp": now() + 600})
}

fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn es256(claims: &Value, kid: &str, pem: &str) -> String {
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(Algorithm::ES256)
    };
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn secret_verifier() -> Verifier {
    Verifier::new(&JwtConfig {
        secret: Secret::new(SECRET),
        ..JwtConfig::default()
    })
    .unwrap()
}

fn jwk(kid: &str, x: &str, y: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"})
}

/// A JWKS server on 127.0.0.1 that counts its requests; `body` may be swapped.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    body: Arc<parking_lot::Mutex<String>>,
}

async fn jwks_server(keys: Vec<Value>) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/auth/v1/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(parking_lot::Mutex::new(json!({ "keys": keys }).to_string()));
    let (h, b) = (hits.clone(), body.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (h, b) = (h.clone(), b.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    JwksServer { url, hits, body }
}

fn jwks_verifier(url: &str) -> Verifier {
    Verifier::new(&JwtConfig {
        jwks_url: Some(url.into()),
        ..JwtConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn hs256_token_gives_the_identity() {
    let id = secret_verifier()
        .verify(&hs256(&claims(), SECRET))
        .await
        .unwrap();
    assert_eq!(
        (id.role.as_str(), id.sub.as_deref()),
        ("authenticated", Some("user-1"))
    );
    // The anon key: a role and no user.
    let anon = json!({"role": "anon", "iss": "supabase", "exp": now() + 600});
    let id = secret_verifier()
        .verify(&hs256(&anon, SECRET))
        .await
        .unwrap();
    assert_eq!((id.role.as_str(), id.sub), ("anon", None));
    // Without keys a verifier still builds (publishable keys may suffice), but
    // believes no token.
    let none = Verifier::new(&JwtConfig::default()).unwrap();
    assert!(matches!(
        none.verify(&hs256(&anon, SECRET)).await,
        Err(JwtError::NoKey)
    ));
}

/// Claims other than role and sub are part of the identity (row-level security may read
/// them), the times are not (they change with each refresh of one session).
#[tokio::test]
async fn other_claims_are_part_of_the_identity() {
    let v = secret_verifier();
    let id = |c: Value| {
        let token = hs256(&c, SECRET);
        let v = &v;
        async move { v.verify(&token).await.unwrap() }
    };
    let mut mfa = claims();
    mfa["aal"] = json!("aal2");
    mfa["iat"] = json!(now());
    let mut refreshed = mfa.clone();
    refreshed["iat"] = json!(now() - 100);
    refreshed["nbf"] = json!(now() - 100);
    refreshed["exp"] = json!(now() + 3_000);
    let mut password_only = mfa.clone();
    password_only["aal"] = json!("aal1");

    let first = id(mfa).await;
    assert_eq!(first.claims.len(), 32, "an MD5 in hex");
    assert_eq!(id(refreshed).await, first);
    let other = id(password_only).await;
    assert_eq!(
        (other.role.as_str(), other.sub.as_deref()),
        ("authenticated", Some("user-1"))
    );
    assert_ne!(other.claims, first.claims);
    // Only role, sub and times: nothing else to key on.
    let bare = json!({"role": "authenticated", "sub": "u", "exp": now() + 60, "iat": now()});
    assert_eq!(id(bare).await.claims, "");
}

#[tokio::test]
async fn bad_hs256_tokens_are_rejected_with_their_reason() {
    let v = secret_verifier();
    let wrong = hs256(&claims(), "another-secret-of-the-same-kind-but-not-ours");
    assert!(matches!(
        v.verify(&wrong).await,
        Err(JwtError::BadSignature)
    ));

    let mut expired = claims();
    expired["exp"] = json!(now() - 2 * LEEWAY_SECS);
    assert!(matches!(
        v.verify(&hs256(&expired, SECRET)).await,
        Err(JwtError::Expired)
    ));
    let mut skewed = claims();
    skewed["exp"] = json!(now() - LEEWAY_SECS / 2);
    assert!(
        v.verify(&hs256(&skewed, SECRET)).await.is_ok(),
        "within the leeway"
    );

    let mut early = claims();
    early["nbf"] = json!(now() + 10 * LEEWAY_SECS);
    assert!(matches!(
        v.verify(&hs256(&early, SECRET)).await,
        Err(JwtError::NotYetValid)
    ));

    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        v.verify(&hs256(&no_exp, SECRET)).await,
        Err(JwtError::MissingExp)
    ));

    let mut no_role = claims();
    no_role.as_object_mut().unwrap().remove("role");
    assert!(matches!(
        v.verify(&hs256(&no_role, SECRET)).await,
        Err(JwtError::MissingRole)
    ));

    let mut bad_role = claims();
    bad_role["role"] = json!(7);
    assert!(matches!(
        v.verify(&hs256(&bad_role, SECRET)).await,
        Err(JwtError::BadClaims { .. })
    ));
}

#[tokio::test]
async fn tampered_and_unsigned_tokens_are_rejected() {
    let v = secret_verifier();
    let token = hs256(&claims(), SECRET);
    let parts: Vec<&str> = token.split('.').collect();
    let mut elevated = claims();
    elevated["role"] = json!("service_role");
    let tampered = format!("{}.{}.{}", parts[0], b64(&elevated), parts[2]);
    assert!(matches!(
        v.verify(&tampered).await,
        Err(JwtError::BadSignature)
    ));

    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&claims())
        );
        let err = v.verify(&unsigned).await.unwrap_err();
        assert!(matches!(err, JwtError::Unsigned), "{alg}: {err}");
    }
    let hs512 = format!("{}.{}.c2ln", b64(&json!({"alg": "HS512"})), b64(&claims()));
    assert!(matches!(
        v.verify(&hs512).await,
        Err(JwtError::UnsupportedAlgorithm { .. })
    ));
    let crit = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "HS256", "crit": ["b64"]})),
        b64(&claims())
    );
    assert!(matches!(
        v.verify(&crit).await,
        Err(JwtError::CriticalExtension)
    ));
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.sig",
        "!!.e30.x",
        &"a".repeat(20_000),
    ] {
        assert!(
            matches!(v.verify(junk).await, Err(JwtError::Malformed)),
            "{junk:.20}"
        );
    }
    // ES256 needs a JWKS, HS256 a secret: neither stands in for the other.
    let es = es256(&claims(), "k1", K1_PEM);
    assert!(matches!(
        v.verify(&es).await,
        Err(JwtError::NotConfigured { alg: "ES256", .. })
    ));
}

#[tokio::test]
async fn errors_never_quote_the_token() {
    let v = secret_verifier();
    let mut c = claims();
    c["sub"] = json!("sensitive-user-id");
    c["role"] = json!(["sensitive-role"]);
    let token = hs256(&c, SECRET);
    let err = v.verify(&token).await.unwrap_err().to_string();
    assert!(
        !err.contains("sensitive") && !err.contains(&token[..20]),
        "{err}"
    );
}

#[test]
fn jwt_shape_and_config_checks() {
    assert!(looks_like_jwt(&hs256(&claims(), SECRET)));
    assert!(looks_like_jwt("eyJh.eyJz.")); // unsigned: reaches verify, rejected there
    assert!(!looks_like_jwt("sb_publishable_abc123"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a+b.c.d"));
    assert!(!looks_like_jwt(".b.c"));

    assert!(!JwtConfig::default().is_configured());
    let bad = JwtConfig {
        secret_file: Some("/nonexistent/jwt-secret".into()),
        jwks_url: Some("http://example.com/jwks.json".into()),
        ..JwtConfig::default()
    };
    assert!(bad.is_configured());
    let problems = bad.validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("secret_file") && problems[1].contains("https://"));
    for url in ["ftp://x/jwks", "not a url"] {
        let c = JwtConfig {
            jwks_url: Some(url.into()),
            ..JwtConfig::default()
        };
        assert_eq!(c.validate().len(), 1, "{url}");
        assert!(matches!(Verifier::new(&c), Err(JwtError::JwksUrl(_))));
    }
    let ok = JwtConfig {
        jwks_url: Some("https://xyz.supabase.co/auth/v1/.well-known/jwks.json".into()),
        ..JwtConfig::default()
    };
    assert!(ok.validate().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let mut from_file = JwtConfig {
        secret_file: Some(file),
        ..JwtConfig::default()
    };
    assert!(from_file.validate().is_empty());
    from_file.resolve_files();
    assert_eq!(from_file.secret.expose(), SECRET);
}

#[tokio::test]
async fn es256_tokens_verify_with_the_jwks_fetched_once() {
    let server = jwks_server(vec![jwk("k1", K1_X, K1_Y)]).await;
    let v = jwks_verifier(&server.url);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "nothing fetched before a token"
    );
    for _ in 0..3 {
        let id = v.verify(&es256(&claims(), "k1", K1_PEM)).await.unwrap();
        assert_eq!(id.sub.as_deref(), Some("user-1"));
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "cached after the first fetch"
    );

    // Signed by another key under k1's name; then an HS256 token, which the JWKS
    // alone cannot verify (its public key is never an HMAC secret).
    let forged = es256(&claims(), "k1", K2_PEM);
    assert!(matches!(
        v.verify(&forged).await,
        Err(JwtError::BadSignature)
    ));
    let hs = hs256(&claims(), "whatever");
    assert!(matches!(
        v.verify(&hs).await,
        Err(JwtError::NotConfigured { alg: "HS256", .. })
    ));
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(K1_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&no_kid).await,
        Err(JwtError::MissingKid { .. })
    ));
    let mut expired = claims();
    expired["exp"] = json!(now() - 2 * LEEWAY_SECS);
    assert!(matches!(
        v.verify(&es256(&expired, "k1", K1_PEM)).await,
        Err(JwtError::Expired)
    ));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_kids_cause_one_refetch_per_window() {
    let server = jwks_server(vec![jwk("k1", K1_X, K1_Y)]).await;
    let v = Arc::new(jwks_verifier(&server.url));
    v.verify(&es256(&claims(), "k1", K1_PEM)).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // Key rotation: k2 appears; a burst of k2 tokens makes one refetch, all pass.
    *server.body.lock() =
        json!({"keys": [jwk("k1", K1_X, K1_Y), jwk("k2", K2_X, K2_Y)]}).to_string();
    let burst = (0..20).map(|_| {
        let v = v.clone();
        tokio::spawn(async move { v.verify(&es256(&claims(), "k2", K2_PEM)).await })
    });
    for r in futures_util::future::join_all(burst).await {
        r.unwrap().unwrap();
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // A flood of made-up kids within the window: no fetch at all.
    let flood = (0..50).map(|i| {
        let v = v.clone();
        tokio::spawn(async move {
            v.verify(&es256(&claims(), &format!("random-{i}"), K1_PEM))
                .await
        })
    });
    for r in futures_util::future::join_all(flood).await {
        assert!(matches!(r.unwrap(), Err(JwtError::UnknownKid { .. })));
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    v.verify(&es256(&claims(), "k1", K1_PEM)).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

/// A key taken out of the JWKS stops verifying once the set is older than its maximum
/// age (here 50 ms); a set that old that cannot be fetched again verifies nothing.
#[tokio::test]
async fn a_revoked_key_stops_verifying_once_the_set_is_old() {
    let server = jwks_server(vec![jwk("k1", K1_X, K1_Y)]).await;
    let mut v = jwks_verifier(&server.url);
    v.jwks
        .as_mut()
        .unwrap()
        .set_max_age(Duration::from_millis(50));
    let token = es256(&claims(), "k1", K1_PEM);
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "fresh: no refetch");

    // k1 is revoked: the set is fetched again once it is too old, and k1 is gone.
    *server.body.lock() = json!({"keys": [jwk("k2", K2_X, K2_Y)]}).to_string();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let err = v.verify(&token).await.unwrap_err();
    assert!(matches!(err, JwtError::UnknownKid { .. }), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    v.verify(&es256(&claims(), "k2", K2_PEM)).await.unwrap();

    // The set grows old again and the next fetch is not due yet (one a window): the
    // old set is not trusted meanwhile, though it still names k2.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let err = v.verify(&es256(&claims(), "k2", K2_PEM)).await.unwrap_err();
    assert!(matches!(err, JwtError::UnknownKid { .. }), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_named_in_the_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = jwks_verifier(&format!("http://127.0.0.1:{port}/jwks.json"));
    let err = v.verify(&es256(&claims(), "k1", K1_PEM)).await.unwrap_err();
    assert!(matches!(err, JwtError::JwksUnavailable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
