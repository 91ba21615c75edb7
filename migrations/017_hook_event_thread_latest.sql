-- v17: A thread's latest hook event (has its session ended? when was it last active?) by an index,
-- not by walking the whole table backwards from its newest row, which a session with no recent
-- events made a full scan on Postgres (49 ms a message at 10,000 sessions, bench hold)
CREATE INDEX hook_event_thread_id_idx ON hook_event (thread_id, id)
