-- v5: Coalesced messages: the lines of each merged notice, so editing one line re-sends the rest
CREATE TABLE merged_message (
    event_id  TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES thread (id),
    lines     TEXT NOT NULL
);
CREATE INDEX merged_message_thread_idx ON merged_message (thread_id)
