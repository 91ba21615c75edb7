-- v19: `!claude file` requests outlive a restart (control/file_requests.py): one row from the
-- command until the host's answer or the request's expiry; asked_at (ms) dates the expiry.
CREATE TABLE file_request (
    id          TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL REFERENCES thread (id),
    path        TEXT NOT NULL,
    root        TEXT NOT NULL,
    by_user     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    asked_at    BIGINT NOT NULL
)
