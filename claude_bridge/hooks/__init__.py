"""Claude Code hooks: the events they send, the HTTP server that receives them, the answers."""
