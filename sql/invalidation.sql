-- codette-cache: change notifications for cache invalidation.
--
-- After any change to the rows a cached context depends on, PostgreSQL sends a small
-- JSON notification on the channel `codette_cache_invalidate`; every codette-cache with
-- [invalidation.postgres] configured LISTENs on it and purges the answers that depended
-- on the changed rows (by tag: user:<id>, file:<filename>, snippets).
--
-- Payload (version 1; under 8000 bytes, PostgreSQL's limit):
--   {"v": 1, "table": "chat_history", "op": "INSERT", "user_id": ["<old>", "<new>"],
--    "at_ms": <the statement's start, ms since the epoch>}
-- with "filename" for codette_files and "FileName" for codette; identities too long to
-- fit, and every TRUNCATE, send "all": true instead (the daemon then purges everything
-- that depends on the table).
--
-- Idempotent: run it again after an upgrade. On Supabase, paste it into the SQL editor;
-- the daemon's LISTEN needs the direct connection string (port 5432), not the pooled one
-- (a transaction-mode pooler does not keep a session for LISTEN).

CREATE OR REPLACE FUNCTION public.codette_cache_notify()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    channel  constant text := 'codette_cache_invalidate';
    column_name text := CASE TG_TABLE_NAME
        WHEN 'chat_history'  THEN 'user_id'
        WHEN 'codette_files' THEN 'filename'
        WHEN 'codette'       THEN 'FileName'
    END;
    ids      jsonb := '[]'::jsonb;
    payload  jsonb;
BEGIN
    payload := jsonb_build_object(
        'v', 1,
        'table', TG_TABLE_NAME,
        'op', TG_OP,
        -- The statement's time, not the row's: identical payloads of one transaction
        -- are then sent once (a bulk insert for one user is one notification).
        'at_ms', floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    );
    IF TG_LEVEL = 'ROW' THEN
        -- The identity before and after: an UPDATE that moves a row to another user
        -- or filename changes the answers of both.
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            ids := ids || jsonb_build_array(to_jsonb(OLD) -> column_name);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            ids := ids || jsonb_build_array(to_jsonb(NEW) -> column_name);
        END IF;
        SELECT COALESCE(jsonb_agg(DISTINCT id), '[]'::jsonb) INTO ids
        FROM jsonb_array_elements(ids) AS id
        WHERE jsonb_typeof(id) = 'string';
        payload := payload || jsonb_build_object(column_name, ids);
    ELSE
        payload := payload || '{"all": true}'::jsonb;
    END IF;
    IF octet_length(payload::text) > 7000 THEN
        payload := (payload - column_name) || '{"all": true}'::jsonb;
    END IF;
    PERFORM pg_notify(channel, payload::text);
    RETURN NULL;
END
$$;

-- One row trigger and one TRUNCATE trigger per table, replaced if present.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['codette', 'codette_files', 'chat_history'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS codette_cache_notify_row ON public.%I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS codette_cache_notify_truncate ON public.%I', t);
        EXECUTE format('CREATE TRIGGER codette_cache_notify_row '
                       'AFTER INSERT OR UPDATE OR DELETE ON public.%I '
                       'FOR EACH ROW EXECUTE FUNCTION public.codette_cache_notify()', t);
        EXECUTE format('CREATE TRIGGER codette_cache_notify_truncate '
                       'AFTER TRUNCATE ON public.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION public.codette_cache_notify()', t);
    END LOOP;
END
$$;
