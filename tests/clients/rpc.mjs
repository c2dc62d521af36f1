#!/usr/bin/env node
// Calls one RPC through the real supabase-js, exactly as an app would:
//   createClient(url, key).rpc(fn, args)
// and prints one JSON line: {"data": ..., "error": ..., "status": ..., "headers": ...}.
//
// Usage: node rpc.mjs --url URL --key ANON_KEY --function NAME [--args JSON]
//          [--token ACCESS_TOKEN | --email EMAIL --password PASSWORD] [--get]
//          [--single] [--raw-headers]
//
// --token     a user's access token, given to the client through the `accessToken` option
//             (or, with --token-header, through global.headers.Authorization)
// --email     sign in with auth.signInWithPassword first, then call with that session
// --get       rpc(fn, args, { get: true }): GET /rest/v1/rpc/fn?arg=...
// --single    .single(): Accept: application/vnd.pgrst.object+json
// --raw-headers  wrap global.fetch (test instrumentation only) to report the RPC
//             response's headers and the request's, as "headers" / "request_headers"
import { parseArgs } from "node:util";
import { createClient } from "@supabase/supabase-js";
import ws from "ws";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    key: { type: "string" },
    token: { type: "string" },
    "token-header": { type: "boolean", default: false },
    email: { type: "string" },
    password: { type: "string" },
    function: { type: "string" },
    args: { type: "string", default: "{}" },
    get: { type: "boolean", default: false },
    single: { type: "boolean", default: false },
    "raw-headers": { type: "boolean", default: false },
  },
  strict: true,
});
for (const required of ["url", "key", "function"]) {
  if (!opts[required]) {
    console.error(`rpc.mjs: --${required} is required`);
    process.exit(2);
  }
}

let seen = null;
const options = {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  global: {},
  // Node 20 has no native WebSocket: realtime-js asks for `ws` (its documented fix).
  realtime: { transport: ws },
};
if (opts["raw-headers"]) {
  options.global.fetch = async (input, init) => {
    const response = await fetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (new URL(url).pathname.includes("/rest/v1/rpc/")) {
      seen = {
        headers: Object.fromEntries(response.headers.entries()),
        request_headers: Object.fromEntries(new Headers(init?.headers ?? {}).entries()),
      };
    }
    return response;
  };
}
if (opts.token && opts["token-header"]) {
  options.global.headers = { Authorization: `Bearer ${opts.token}` };
} else if (opts.token) {
  options.accessToken = async () => opts.token;
}

const supabase = createClient(opts.url, opts.key, options);
const out = {};
if (opts.email) {
  const { error } = await supabase.auth.signInWithPassword({
    email: opts.email,
    password: opts.password ?? "",
  });
  if (error) {
    out.sign_in_error = { message: error.message, status: error.status ?? null };
  }
}

let query = supabase.rpc(opts.function, JSON.parse(opts.args), { get: opts.get });
if (opts.single) query = query.single();
const { data, error, status } = await query;
// PostgrestError is an Error: its message is not an own enumerable property.
const plain = error
  ? { code: error.code ?? null, message: error.message ?? null, details: error.details ?? null, hint: error.hint ?? null }
  : null;
Object.assign(out, { data: data ?? null, error: plain, status });
if (seen) Object.assign(out, seen);
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
