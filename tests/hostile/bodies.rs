//! Bodies and queries: malformed, mistyped, oversized, truncated or non-UTF-8 input
//! gets a JSON 4xx.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Daemon;
use crate::raw_http::{
    Raw, assert_context, assert_error, assert_still_serving, get, get_request, key_of, post,
    post_request,
};
use crate::{SHORT_TIMEOUT_MS, config, short_timeout_config};

// ---------------------------------------------------------------------------------------
// Bodies and queries
// ---------------------------------------------------------------------------------------

/// Malformed JSON is a 400 `invalid_body`, and the keep-alive connection stays usable.
#[test]
fn malformed_json_is_400_and_the_connection_stays_usable() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    let bodies: &[&[u8]] = &[
        b"{\"message\": ",
        b"{message: \"reverb\"}",
        b"not json at all",
        b"{\"message\": \"reverb\"}}",
        b"{\"message\": \"reverb\",}",
        b"",
        b"\"",
    ];
    for body in bodies {
        conn.send(&post_request("/codette/context", body));
        let response = conn.expect_response();
        let message = assert_error(&response, 400, "invalid_body");
        assert!(
            message.contains("not valid"),
            "{:?}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    // Same connection, after seven errors: still answered.
    conn.send(&get_request("/codette/context?message=reverb"));
    assert_context(&conn.expect_response());
    assert_still_serving(&mut daemon);
}

/// Right JSON, wrong types (numbers, null, arrays, objects, a bare string) are 400s.
#[test]
fn wrong_types_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let bodies = [
        r#"{"message": 42}"#,
        r#"{"message": null}"#,
        r#"{"message": true}"#,
        r#"{"message": ["reverb"]}"#,
        r#"{"message": {"text": "reverb"}}"#,
        r#"{"message": "reverb", "filename": 7}"#,
        r#"{"message": "reverb", "filename": ["a.ts"]}"#,
        r#"[{"message": "reverb"}]"#,
        r#""reverb""#,
        "42",
        "null",
    ];
    for body in bodies {
        let response = post(daemon.port(), "/codette/context", body.as_bytes());
        let message = assert_error(&response, 400, "invalid_body");
        assert!(message.contains("invalid type"), "{body}: {message}");
    }
    // A null filename is no filename; extra fields are ignored (the backend forwards all).
    let ok = post(
        daemon.port(),
        "/codette/context",
        br#"{"message": "reverb", "filename": null, "session_id": 5, "perspective": {"a": [1]}}"#,
    );
    assert_eq!(assert_context(&ok)["cache"]["key"], key_of("reverb", None));
    assert_still_serving(&mut daemon);
}

/// Missing or empty `message` (body or query) is a 400 naming what is missing.
#[test]
fn missing_fields_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for body in ["{}", r#"{"filename": "a.ts"}"#] {
        let message = assert_error(
            &post(port, "/codette/context", body.as_bytes()),
            400,
            "invalid_body",
        );
        assert!(message.contains("missing field `message`"), "{message}");
    }
    for path in [
        "/codette/context",
        "/codette/context?",
        "/codette/context?filename=a.ts",
        "/codette/context?messag=reverb",
    ] {
        let message = assert_error(&get(port, path), 400, "invalid_query");
        assert!(message.contains("message=<text>"), "{path}: {message}");
    }
    for path in [
        "/codette/context?message=",
        "/codette/context?message=%20%09+",
    ] {
        assert_error(&get(port, path), 400, "empty_message");
    }
    assert_error(
        &post(port, "/codette/context", br#"{"message": " \n\t "}"#),
        400,
        "empty_message",
    );
    assert_still_serving(&mut daemon);
}

/// A declared 10 MB body gets 413 at once, before a byte of it is read, and is closed.
#[test]
fn declared_body_over_the_limit_is_413_without_reading_it() {
    // The default header/body timeout (5 s): a prompt answer cannot be a timeout.
    let mut daemon = Daemon::start(&config(""));
    let mut conn = Raw::connect(daemon.port());
    let started = Instant::now();
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{\"message\":\"",
    );
    let response = conn.expect_response();
    let elapsed = started.elapsed();
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(
        message.contains("65536") && message.contains("max_body_bytes"),
        "{message}"
    );
    assert!(elapsed < Duration::from_secs(1), "413 took {elapsed:?}");
    // hyper cannot reuse a connection whose body was not read: it closes it.
    let closed = conn.closed_within(Duration::from_secs(2));
    assert!(closed.is_some(), "connection left open after the 413");
    assert!(conn.buf.is_empty(), "extra bytes: {:?}", conn.buf);
    assert_still_serving(&mut daemon);
}

/// A chunked body (no length declared) is cut off at the limit with a 413.
#[test]
fn chunked_body_over_the_limit_is_413() {
    let mut daemon = Daemon::start(&config(""));
    let mut conn = Raw::connect(daemon.port());
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    // 80 chunks of 1 KiB = 80 KiB > 64 KiB; written by a thread, the server may stop reading.
    let mut writer = conn.stream.try_clone().expect("clone");
    let feeder = std::thread::spawn(move || {
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend_from_slice(&[b'a'; 1024]);
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..80 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let response = conn.expect_response();
    assert_error(&response, 413, "payload_too_large");
    let _ = feeder.join();
    assert!(conn.closed_within(Duration::from_secs(2)).is_some());
    assert_still_serving(&mut daemon);
}

/// A body shorter than its Content-Length, then silence: 408 within the timeout, then closed.
#[test]
fn short_body_then_silence_is_answered_within_the_timeout() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let mut conn = Raw::connect(daemon.port());
    let started = Instant::now();
    conn.send(
        b"POST /codette/context HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"message\": \"rev",
    );
    let response = conn
        .response(Duration::from_millis(SHORT_TIMEOUT_MS + 1_500))
        .unwrap_or_else(|e| panic!("short body held past the timeout: {e}"));
    let elapsed = started.elapsed();
    assert_error(&response, 408, "body_timeout");
    assert!(
        elapsed >= Duration::from_millis(SHORT_TIMEOUT_MS - 50),
        "answered before the timeout could fire: {elapsed:?}"
    );
    assert!(
        conn.closed_within(Duration::from_secs(1)).is_some(),
        "connection with an unfinished body left open"
    );
    assert_still_serving(&mut daemon);
}

/// Invalid UTF-8 (raw bytes, truncated, overlong, lone surrogates) in a JSON body is a 400.
#[test]
fn invalid_utf8_in_the_body_is_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let bodies: &[&[u8]] = &[
        b"{\"message\": \"\xff\xfe reverb\"}",
        b"{\"message\": \"reverb \xc3\"}",
        b"{\"message\": \"\xc0\xaf\"}",
        b"{\"message\": \"\xed\xa0\x80\"}",
        b"{\"message\": \"\\ud800\"}",
        b"{\"message\": \"\\udc00 x\"}",
        b"{\"message\": \"reverb\", \"filename\": \"\xff.ts\"}",
    ];
    for body in bodies {
        let response = post(daemon.port(), "/codette/context", body);
        assert_error(&response, 400, "invalid_body");
    }
    // A valid escaped surrogate pair is an emoji, not an error.
    let ok = post(
        daemon.port(),
        "/codette/context",
        b"{\"message\": \"\\ud83c\\udfb8 reverb\"}",
    );
    assert_eq!(
        assert_context(&ok)["cache"]["key"],
        key_of("\u{1f3b8} reverb", None)
    );
    // In a query string too: replacing the bytes with U+FFFD would give `x%ff`,
    // `x%fe` and `x%EF%BF%BD` one key, so they are refused as in a body.
    for query in [
        "message=%FF%FEreverb",
        "message=x%ff",
        "message=x%fe",
        "message=reverb&filename=%C3.ts",
    ] {
        let response = get(daemon.port(), &format!("/codette/context?{query}"));
        assert_error(&response, 400, "invalid_utf8");
    }
    let replacement = get(daemon.port(), "/codette/context?message=x%EF%BF%BD");
    assert_eq!(
        assert_context(&replacement)["cache"]["key"],
        key_of("x\u{fffd}", None)
    );
    assert_still_serving(&mut daemon);
}

/// NUL in the message or filename (escaped, percent-encoded or raw) is a clear 400.
#[test]
fn nul_characters_are_400() {
    let mut daemon = Daemon::start(&short_timeout_config());
    let port = daemon.port();
    for body in [
        r#"{"message": "reverb\u0000"}"#,
        r#"{"message": "\u0000"}"#,
        r#"{"message": "reverb", "filename": "a\u0000.ts"}"#,
    ] {
        let message = assert_error(
            &post(port, "/codette/context", body.as_bytes()),
            400,
            "nul_character",
        );
        assert!(message.contains("NUL"), "{message}");
    }
    for path in [
        "/codette/context?message=rev%00erb",
        "/codette/context?message=reverb&filename=a%00.ts",
    ] {
        assert_error(&get(port, path), 400, "nul_character");
    }
    // An unescaped NUL byte inside a JSON string is not JSON at all.
    assert_error(
        &post(port, "/codette/context", b"{\"message\": \"rev\0erb\"}"),
        400,
        "invalid_body",
    );
    assert_still_serving(&mut daemon);
}

/// 1 MiB of emoji: 413 from max_message_bytes (body limit raised), 413 from max_body_bytes (default).
#[test]
fn a_megabyte_of_emoji_is_413() {
    let emoji = "\u{1f3b8}".repeat(256 * 1024);
    assert_eq!(emoji.len(), 1024 * 1024);
    let body = serde_json::to_vec(&json!({ "message": emoji })).unwrap();

    // Body limit raised: the whole body is read and the message limit answers.
    let mut raised = Daemon::start(&config("max_body_bytes = 4194304"));
    let response = post(raised.port(), "/codette/context", &body);
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(
        message.contains("1048576 bytes") && message.contains("max_message_bytes"),
        "{message}"
    );
    assert_still_serving(&mut raised);

    // Default config: the declared length is over 64 KiB; refused before reading.
    let mut default = Daemon::start(&config(""));
    let mut conn = Raw::connect(default.port());
    let mut writer = conn.stream.try_clone().expect("clone");
    let bytes = post_request("/codette/context", &body);
    let feeder = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let response = conn.expect_response();
    let message = assert_error(&response, 413, "payload_too_large");
    assert!(message.contains("max_body_bytes"), "{message}");
    drop(conn);
    let _ = feeder.join();
    assert_still_serving(&mut default);
}
