-- 0010_token_notify.sql — a scheduler keeps the tokens it has checked in memory, so that a
-- request costs no query of its own; it LISTENs on weir_tokens, and this trigger tells it
-- (and every other scheduler) when a token is revoked, changed or deleted, in the same
-- transaction, so a revocation takes effect on its next request. A new token needs no notice:
-- one the scheduler has not seen is looked up. See docs/decisions.md, "Tokens checked once".
CREATE FUNCTION weir_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('weir_tokens', '');
    RETURN NULL;
END $$;

CREATE TRIGGER api_tokens_changed AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION weir_tokens_changed();
CREATE TRIGGER api_tokens_truncated AFTER TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION weir_tokens_changed();
