-- v6: Project-space links are retried: each thread records when its room was put into its space
ALTER TABLE thread ADD COLUMN space_linked_at BIGINT;
-- Rooms made before this version had their one try when they were created.
UPDATE thread SET space_linked_at = updated_at WHERE room_id IS NOT NULL
