-- v15: A file an operator attached in Matrix (m.image, m.file, m.video, m.audio) rides on its
-- session_message (body: the caption). file_name is the sanitised name, file_store where the
-- bridge keeps the bytes (relative to bridge.attachments.directory), file_path the path Claude
-- was given on its host, file_fetched_at when the host (or the bridge, for a local token) had
-- written it there: the ✓ waits for that.
ALTER TABLE session_message ADD COLUMN file_name TEXT;
ALTER TABLE session_message ADD COLUMN file_type TEXT;
ALTER TABLE session_message ADD COLUMN file_size BIGINT;
ALTER TABLE session_message ADD COLUMN file_store TEXT;
ALTER TABLE session_message ADD COLUMN file_path TEXT;
ALTER TABLE session_message ADD COLUMN file_fetched_at BIGINT;
