#!/usr/bin/env python3
"""Calls one RPC through the real supabase-py, exactly as an app would:

    create_client(url, key).rpc(fn, args).execute()

and prints one JSON line: {"data": ..., "error": ..., "status": ..., "headers": ...}.

Usage: rpc.py --url URL --key ANON_KEY --function NAME [--args JSON]
         [--token ACCESS_TOKEN | --email EMAIL --password PASSWORD] [--get]
         [--single] [--raw-headers]

--token        a user's access token, given as the client's Authorization header
               (ClientOptions(headers={"Authorization": "Bearer ..."}))
--email        sign in with auth.sign_in_with_password first, then call with that session
--get          rpc(fn, args, get=True): GET /rest/v1/rpc/fn?arg=...
--single       .single(): Accept: application/vnd.pgrst.object+json
--raw-headers  report the RPC response's headers and the request's (test
               instrumentation: an httpx client with an event hook, given through
               ClientOptions(httpx_client=...))

"status" is the HTTP status of the RPC response, which supabase-py does not return: it is
read by the same event hook (always installed; it changes nothing in the request).
"""

import argparse
import json
import sys

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token")
    parser.add_argument("--email")
    parser.add_argument("--password", default="")
    parser.add_argument("--function", required=True)
    parser.add_argument("--args", default="{}")
    parser.add_argument("--get", action="store_true")
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--raw-headers", action="store_true")
    opts = parser.parse_args()

    seen: dict = {}

    def record(response: httpx.Response) -> None:
        if "/rest/v1/rpc/" in response.request.url.path:
            seen["status"] = response.status_code
            seen["headers"] = {k.lower(): v for k, v in response.headers.items()}
            seen["request_headers"] = {
                k.lower(): v for k, v in response.request.headers.items()
            }

    http = httpx.Client(event_hooks={"response": [record]}, timeout=30)
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    options = ClientOptions(
        headers=headers,
        httpx_client=http,
        auto_refresh_token=False,
        persist_session=False,
    )
    supabase = create_client(opts.url, opts.key, options)

    out: dict = {}
    if opts.email:
        try:
            supabase.auth.sign_in_with_password(
                {"email": opts.email, "password": opts.password}
            )
        except Exception as e:  # noqa: BLE001 - reported, the RPC is still made
            out["sign_in_error"] = {
                "message": str(e),
                "status": getattr(e, "status", None),
            }

    query = supabase.rpc(opts.function, json.loads(opts.args), get=opts.get)
    if opts.single:
        query = query.single()
    try:
        response = query.execute()
        out.update(data=response.data, error=None)
    except APIError as e:
        out.update(
            data=None,
            error={
                "code": e.code,
                "message": e.message,
                "details": e.details,
                "hint": e.hint,
            },
        )
    except httpx.HTTPError as e:
        # No HTTP answer at all (refused, reset, timed out): reported like supabase-js
        # does, with status 0, rather than as a crash.
        out.update(
            data=None,
            error={
                "code": "",
                "message": f"{type(e).__name__}: {e}",
                "details": None,
                "hint": None,
            },
        )
    out["status"] = seen.get("status", 0)
    if opts.raw_headers:
        out["headers"] = seen.get("headers")
        out["request_headers"] = seen.get("request_headers")
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
