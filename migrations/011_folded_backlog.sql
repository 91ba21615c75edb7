-- v11: A thread's backlog over bridge.mirror.backlog_events is folded: folded events get state 'folded', the first of them carries the room's notice
ALTER TABLE hook_event ADD COLUMN folded TEXT
