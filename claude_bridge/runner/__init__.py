"""``claude-bridge runner``: the host side of starting, resuming, interrupting and typing into
Claude Code sessions from Matrix (issue 15; the wire contract is in docs/runner.md).

- ``config.py``: flags and the YAML file;
- ``tmux.py``: every tmux call, argv only; ``launch.py``: what a session's pane runs first;
- ``sessions.py``: the runner's sessions found in tmux, their exits;
- ``jobs.py``: carrying out a job (at most once, ``journal.py``); ``trust.py``: first-run state;
- ``loop.py``: the long-poll to the bridge; ``service.py``: wiring it together.
"""
