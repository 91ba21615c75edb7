-- v2: Steering from Matrix: the per-session message inbox, approvals, per-thread settings and members, the audit log
CREATE TABLE session_message (
    id            BIGSERIAL PRIMARY KEY, -- only: postgres
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    event_id      TEXT NOT NULL UNIQUE,
    thread_id     TEXT NOT NULL REFERENCES thread (id),
    room_id       TEXT NOT NULL,
    sender        TEXT NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued',
    received_at   BIGINT NOT NULL,
    delivered_at  BIGINT,
    delivered_via TEXT,
    delivered_by  BIGINT,
    shown_at      BIGINT
);
CREATE INDEX session_message_queue_idx ON session_message (thread_id, id) WHERE state = 'queued';
CREATE INDEX session_message_unshown_idx ON session_message (id) WHERE state = 'delivered' AND shown_at IS NULL;

CREATE TABLE approval (
    hook_event_id  BIGINT PRIMARY KEY REFERENCES hook_event (id),
    thread_id      TEXT NOT NULL REFERENCES thread (id),
    agent_id       TEXT NOT NULL DEFAULT '',
    call_key       TEXT NOT NULL,
    tool_name      TEXT NOT NULL,
    request        TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    decided_by     TEXT,
    decided_at     BIGINT,
    decision_event TEXT,
    reason         TEXT,
    shown_at       BIGINT
);
CREATE INDEX approval_pending_idx ON approval (thread_id) WHERE state = 'pending';
CREATE INDEX approval_unshown_idx ON approval (hook_event_id) WHERE state <> 'pending' AND shown_at IS NULL;

CREATE TABLE thread_control (
    thread_id         TEXT PRIMARY KEY REFERENCES thread (id),
    listen_until      BIGINT,
    listen_by         TEXT,
    muted             BOOLEAN NOT NULL DEFAULT false,
    stop_requested_by TEXT,
    stop_requested_at BIGINT,
    stop_blocks       INTEGER NOT NULL DEFAULT 0,
    archived_by       TEXT,
    archived_at       BIGINT
);

CREATE TABLE thread_member (
    thread_id TEXT NOT NULL REFERENCES thread (id),
    user_id   TEXT NOT NULL,
    level     TEXT NOT NULL,
    set_by    TEXT NOT NULL,
    set_at    BIGINT NOT NULL,
    PRIMARY KEY (thread_id, user_id)
);

CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY, -- only: postgres
    id        INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    at        BIGINT NOT NULL,
    thread_id TEXT,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX audit_log_thread_idx ON audit_log (thread_id, id);
