-- v16: A runner's type job can carry an operator's file: what the runner fetches and where it writes it (JSON, NULL: none)
ALTER TABLE runner_jobs ADD COLUMN files TEXT
