-- v12: Hand-offs from another session wait in the target room for an operator's ✅ (state 'proposed')
-- from_thread is the session whose Claude wrote it (NULL: a person), approved_by who let it
-- through, proposal_event the bridge's notice asking for the decision (a reaction there counts).
ALTER TABLE session_message ADD COLUMN from_thread TEXT;
ALTER TABLE session_message ADD COLUMN approved_by TEXT;
ALTER TABLE session_message ADD COLUMN proposal_event TEXT;
CREATE INDEX session_message_proposal_idx ON session_message (proposal_event) WHERE proposal_event IS NOT NULL
