-- v14: Host runners (issue 15): who polls for jobs, and the jobs they run
-- A runner is (hook token name, host). sessions and projects are JSON lists as last reported:
-- last_seen (ms) is when a poll of it last started or ended: online = a poll open now, or one
-- that ended less than 2 × wait seconds ago.
CREATE TABLE runners (
    token_name   TEXT NOT NULL,
    host         TEXT NOT NULL,
    projects     TEXT NOT NULL,
    accept_from  TEXT,
    max_sessions INTEGER,
    sessions     TEXT NOT NULL,
    wait         INTEGER NOT NULL,
    last_seen    BIGINT NOT NULL,
    PRIMARY KEY (token_name, host)
);
-- A job is committed before the Matrix command is answered, then handed to its runner in every
-- poll answer until the runner's result comes back (state queued → sent → done | failed).
-- origin_room/origin_event: where it was asked for (a refusal is answered there). kind 'exit'
-- rows record an exit already reported (id 'exit:<the job that launched the session>').
CREATE TABLE runner_jobs (
    id           TEXT PRIMARY KEY,
    token_name   TEXT NOT NULL,
    host         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    project      TEXT,
    session_id   TEXT NOT NULL,
    prompt       TEXT,
    text         TEXT,
    requested_by TEXT NOT NULL,
    room_id      TEXT,
    origin_room  TEXT,
    origin_event TEXT,
    state        TEXT NOT NULL DEFAULT 'queued',
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX runner_jobs_open_idx ON runner_jobs (token_name, host, created_at) WHERE state IN ('queued', 'sent');
CREATE INDEX runner_jobs_session_idx ON runner_jobs (session_id, created_at)
