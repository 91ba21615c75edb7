-- v10: Room policy: which rules each thread room and space was last brought in line with, and which rooms someone encrypted
CREATE TABLE room_policy (
    room_id      TEXT PRIMARY KEY,
    policy       TEXT,
    checked_at   BIGINT,
    encrypted_at BIGINT,
    encrypted_by TEXT
)
