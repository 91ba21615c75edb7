-- v9: Thread ownership: the hook token that opened a thread owns it (thread.token_name); index it
-- Every thread has had its opener's name since v1; a row without one takes the token of its first
-- stored event, so no thread is left without an owner by this upgrade.
UPDATE thread SET token_name = (
    SELECT e.token_name FROM hook_event e
    WHERE e.thread_id = thread.id AND e.token_name IS NOT NULL
    ORDER BY e.id LIMIT 1
) WHERE token_name IS NULL;
CREATE INDEX thread_owner_idx ON thread (token_name, updated_at, id)
