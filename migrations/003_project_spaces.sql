-- v3: Project spaces: one Matrix space per project groups that project's thread rooms
CREATE TABLE project_space (
    project_key TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
)
