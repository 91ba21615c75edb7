-- v1: Initial schema: threads, the hook-event outbox, sent Matrix events, the Matrix inbox, appservice transactions
CREATE TABLE thread (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL UNIQUE,
    room_id      TEXT UNIQUE,
    ghost_mxid   TEXT NOT NULL,
    alias        TEXT NOT NULL,
    project_path TEXT,
    project_name TEXT,
    title        TEXT,
    token_name   TEXT,
    status       TEXT NOT NULL DEFAULT 'active',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE hook_event (
    id          BIGSERIAL PRIMARY KEY, -- only: postgres
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    thread_id   TEXT NOT NULL REFERENCES thread (id),
    event_name  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    token_name  TEXT,
    received_at BIGINT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     BIGINT
);
CREATE INDEX hook_event_outbox_idx ON hook_event (thread_id, id) WHERE state = 'pending';

CREATE TABLE sent_event (
    hook_event_id BIGINT NOT NULL REFERENCES hook_event (id),
    part          INTEGER NOT NULL,
    thread_id     TEXT NOT NULL,
    anchor        TEXT,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (hook_event_id, part)
);
CREATE INDEX sent_event_anchor_idx ON sent_event (thread_id, anchor);
CREATE INDEX sent_event_event_id_idx ON sent_event (event_id);

CREATE TABLE matrix_event (
    event_id     TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    event        TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX matrix_event_inbox_idx ON matrix_event (received_at) WHERE processed_at IS NULL;

CREATE TABLE appservice_txn (
    txn_id      TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    event_count INTEGER NOT NULL
)
