-- v8: Hook events remember the shim's Idempotency-Key: a replay with the same key is stored once
ALTER TABLE hook_event ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX hook_event_idempotency_idx ON hook_event (thread_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL
