-- v4: Indexes for per-thread reads: stream and replay look-ups, catch-up, the messages API and export
CREATE INDEX hook_event_thread_event_idx ON hook_event (thread_id, event_name, id);
CREATE INDEX hook_event_thread_time_idx ON hook_event (thread_id, received_at, id);
CREATE INDEX matrix_event_room_time_idx ON matrix_event (room_id, received_at, event_id)
