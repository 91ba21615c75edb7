-- v7: Index for listing threads newest first (the threads API and the bot's `threads` command)
CREATE INDEX thread_updated_idx ON thread (updated_at, id)
