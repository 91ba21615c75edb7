-- v13: Where a session stands (working, waiting for you, waiting for approval, ended), as its
-- room last said it; NULL: not known yet, so the next change is told to the room.
ALTER TABLE thread ADD COLUMN activity TEXT
