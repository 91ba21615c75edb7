-- v18: Which attachment a Read asks for (control/attached_reads.py, on every Read permission
-- request) by an index: it scanned every message ever stored, 37 ms on SQLite and 9 ms on
-- Postgres at 100,000 messages. Only messages with a file have a path.
CREATE INDEX session_message_file_path_idx ON session_message (thread_id, file_path, id)
    WHERE file_path IS NOT NULL
