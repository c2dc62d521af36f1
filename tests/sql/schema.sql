-- Test schema for codette-cache integration tests: the Supabase objects that the
-- original Codette backend read through `public.get_codette_context`, with seed data.
-- Written from shared/reference/original-system.md; loaded into every TestPostgres.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN;
    END IF;
END
$$;

CREATE TABLE public.codette (
    "FileName"       text,
    "ContentSnippet" text
);
CREATE INDEX codette_fts_idx ON public.codette
    USING gin (to_tsvector('english', "ContentSnippet"));

CREATE TABLE public.codette_files (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    filename     text UNIQUE,
    file_type    text,
    storage_path text,
    uploaded_at  timestamptz
);

CREATE TABLE public.chat_history (
    id         uuid,
    user_id    text,
    messages   jsonb,
    updated_at timestamptz
);

-- Returns exactly {"snippets": [...], "file": {...} | null, "chat_history": [...]}.
CREATE OR REPLACE FUNCTION public.get_codette_context(
    input_prompt text,
    optionally_filename text DEFAULT NULL
)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'snippets', COALESCE((
            SELECT jsonb_agg(
                       jsonb_build_object('filename', s."FileName", 'snippet', s."ContentSnippet")
                       ORDER BY s.rank DESC, s."FileName", s."ContentSnippet")
            FROM (
                SELECT c."FileName", c."ContentSnippet",
                       ts_rank(to_tsvector('english', c."ContentSnippet"),
                               plainto_tsquery('english', input_prompt)) AS rank
                FROM public.codette c
                WHERE to_tsvector('english', c."ContentSnippet")
                      @@ plainto_tsquery('english', input_prompt)
                ORDER BY rank DESC, c."FileName", c."ContentSnippet"
                LIMIT 10
            ) s
        ), '[]'::jsonb),
        'file', (
            SELECT to_jsonb(f)
            FROM (
                SELECT id, filename, file_type, storage_path, uploaded_at
                FROM public.codette_files
                WHERE filename = optionally_filename
                LIMIT 1
            ) f
        ),
        'chat_history', COALESCE((
            SELECT jsonb_agg(to_jsonb(h) ORDER BY h.updated_at DESC)
            FROM (
                SELECT id, user_id, messages, updated_at
                FROM public.chat_history
                WHERE user_id = input_prompt
                   OR user_id = lower((regexp_match(
                          input_prompt,
                          '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}'
                      ))[1])
                ORDER BY updated_at DESC
                LIMIT 5
            ) h
        ), '[]'::jsonb)
    );
$$;

GRANT EXECUTE ON FUNCTION public.get_codette_context(text, text) TO authenticated;

INSERT INTO public.codette ("FileName", "ContentSnippet") VALUES
    ('reverb_guide.md', 'Use reverb in mixing to place a sound in a space: send vocals to a plate reverb bus, set pre-delay around 20-40 ms and high-pass the return so the low end stays clean.'),
    ('reverb_tails.md', 'Short room reverb glues drums together; long hall reverb tails suit pads and orchestral strings. Automate the send so tails do not wash out dense sections.'),
    ('effect_chain.ts', '// Effect chain: use reverb after delay when mixing a vocal bus; compression sits before EQ in this chain.'),
    ('effect_chain.ts', 'export function buildEffectChain(): audio analysis runs first, measuring loudness and spectral balance before the chain applies EQ, compression and reverb.'),
    ('vocal_compression.md', 'Compression techniques for vocals: start with a 3:1 ratio, medium attack so consonants pass, fast release, and aim for 3-6 dB of gain reduction.'),
    ('parallel_compression.md', 'Parallel compression techniques blend a heavily compressed copy of drums or vocals with the dry signal to add density without losing transients.'),
    ('drum_eq.md', 'EQ strategies for drums: cut boxiness around 400 Hz on the kick, boost the beater click near 4 kHz, and high-pass everything except kick and bass.'),
    ('snare_eq.md', 'Snare drum EQ: boost body at 200 Hz and crack at 5 kHz; subtractive EQ strategies usually beat boosting on drums.'),
    ('orchestral_mixing.md', 'Mixing orchestral instruments: respect the seating plan when panning, keep strings, brass and woodwinds in one shared hall, and ride faders instead of heavy limiting.'),
    ('orchestral_template.md', 'An orchestral template groups instruments by section; mixing each section to its own bus makes balance changes quick.'),
    ('workflow.md', 'Audio production workflow: record, comp and edit first, then mix, then master; bounce stems at each stage so the workflow can be revisited.'),
    ('session_setup.md', 'A repeatable audio production workflow starts from a session template with labelled tracks, colour-coded buses and gain staging at -18 dBFS.'),
    ('sidechain.md', 'Sidechain compression ducks the bass when the kick hits: key the compressor from the kick, use a fast attack and a release timed to the tempo.'),
    ('mastering.md', 'Mastering chain: gentle EQ, a bus compressor at 1.5:1, then a limiter set to -1 dBTP true peak; check loudness at -14 LUFS for streaming.'),
    ('stereo_imaging.md', 'Stereo imaging: keep bass and kick mono, widen pads with mid/side EQ, and check the mix in mono for phase problems.'),
    ('delay_throws.md', 'Delay throws on the last word of a vocal phrase add space without the wash of a long tail; sync the delay to the song tempo.'),
    ('gain_staging.md', 'Gain staging keeps plugins in their sweet spot: aim for peaks around -10 dBFS on each track before mixing.'),
    ('saturation.md', 'Tape saturation adds harmonics that help bass translate on small speakers; apply it lightly on the master bus.'),
    ('audio_analysis.py', 'Audio analysis computes RMS, peak and spectral centroid per frame so the assistant can suggest EQ moves.'),
    ('deessing.md', 'De-essing vocals: a split-band compressor around 6-8 kHz tames sibilance before the vocal hits the plate send.'),
    ('bus_processing.md', 'Drum bus processing: glue compression with slow attack, a touch of saturation, and parallel compression for punch.');

INSERT INTO public.codette_files (id, filename, file_type, storage_path, uploaded_at) VALUES
    ('5b1f3c2a-7d4e-4f6a-9b8c-0d1e2f3a4b5c', 'effect_chain.ts', 'typescript', 'codette/effect_chain.ts', '2024-05-01T10:00:00Z'),
    ('8c2d4e6f-1a3b-4c5d-8e9f-0a1b2c3d4e5f', 'audio_analysis.py', 'python', 'codette/audio_analysis.py', '2024-05-02T11:30:00Z'),
    ('1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b', 'mixing_notes.md', 'markdown', 'codette/mixing_notes.md', '2024-05-03T09:15:00Z');

INSERT INTO public.chat_history (id, user_id, messages, updated_at) VALUES
    ('a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d', '3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f',
     '[{"role": "user", "content": "How much reverb on vocals?"}, {"role": "assistant", "content": "Start with a short plate and a 30 ms pre-delay."}]',
     '2024-06-01T12:00:00Z'),
    ('b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e', '3f2b9c1e-8a4d-4c6b-9e2f-1a2b3c4d5e6f',
     '[{"role": "user", "content": "And for drums?"}, {"role": "assistant", "content": "A short room, blended low."}]',
     '2024-06-01T12:05:00Z'),
    ('c3d4e5f6-a7b8-4c9d-8e1f-2a3b4c5d6e7f', 'demo-user',
     '[{"role": "user", "content": "What is sidechain compression?"}, {"role": "assistant", "content": "Ducking one signal with another."}]',
     '2024-06-02T08:00:00Z');

-- ---------------------------------------------------------------------------------------
-- What Supabase adds around the tables, for the PostgREST-shaped gateway's JWT callers
-- (tests/common/postgrest/ runs each call as the token's role with
-- request.jwt.claims set, as PostgREST does) and the transparent proxy's tests.
-- ---------------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$$;

-- PostgREST's authenticator switches to these; here the gateway connects as postgres.
GRANT anon, authenticated, service_role TO postgres;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA public, auth TO anon, authenticated, service_role;

-- Supabase's helpers, reading the claims PostgREST sets per request. Subjects here are
-- plain text ('user-a'), so uid() is text rather than Supabase's uuid.
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::json->>'sub' $$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::json->>'role' $$;

GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role()
    TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.get_codette_context(text, text) TO anon, service_role;
GRANT SELECT ON public.codette, public.codette_files TO anon, authenticated, service_role;

-- Per-user rows behind row-level security: each user sees only their own notes.
CREATE TABLE public.notes (
    owner text NOT NULL,
    body  text NOT NULL
);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_owner ON public.notes FOR SELECT USING (owner = auth.uid());
GRANT SELECT ON public.notes TO anon, authenticated, service_role;

INSERT INTO public.notes (owner, body) VALUES
    ('user-a', 'user-a: compress the vocal bus 3:1'),
    ('user-a', 'user-a: plate reverb, 30 ms pre-delay'),
    ('user-b', 'user-b: sidechain the bass to the kick');

-- The caller's notes, through RLS: {"uid": <sub or null>, "notes": [<body>, ...]}.
CREATE OR REPLACE FUNCTION public.my_notes()
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT jsonb_build_object(
        'uid', auth.uid(),
        'notes', coalesce(jsonb_agg(n.body ORDER BY n.body), '[]'::jsonb)
    )
    FROM public.notes n;
$$;

-- A different answer every call: never safe to cache.
CREATE OR REPLACE FUNCTION public.random_pick()
RETURNS jsonb
LANGUAGE sql
VOLATILE
AS $$ SELECT jsonb_build_object('pick', random()) $$;

-- Always fails with SQLSTATE P0001 (PostgREST: 400), a detail and a hint.
CREATE OR REPLACE FUNCTION public.fail_always()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RAISE EXCEPTION 'fail_always always fails'
        USING DETAIL = 'called on purpose by a test', HINT = 'do not call fail_always';
END
$$;

GRANT EXECUTE ON FUNCTION public.my_notes(), public.random_pick(), public.fail_always()
    TO anon, authenticated, service_role;
