"""What a runner session's tmux pane runs: read the spec the runner wrote, start Claude Code
with the runner's environment, wait for it, and leave its exit status where the runner reads it.

Standard library only; run as ``python -I -S launch.py SPEC``. The spec file (0600, in the
runner's 0700 state directory) holds the argv, the directory and the environment, and is
deleted as soon as it is read. This way

- the session gets the runner's environment (API keys, ``ANTHROPIC_BASE_URL``, the hook token)
  even when the tmux server was started earlier from another one, without putting a secret on a
  command line that every user of the machine can read in ``/proc``;
- the prompt from Matrix never passes through tmux's command parser.

The pane's own ``TERM`` and ``TMUX*`` variables are kept: they describe the terminal tmux gives it.
"""

from __future__ import annotations

import json
import os
import signal
import sys

KEEP = ("TERM", "TMUX", "TMUX_PANE", "COLORTERM")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: launch.py SPEC", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            spec = json.load(f)
        os.unlink(argv[1])
    except (OSError, ValueError) as e:
        print(
            f"claude-bridge runner: can't read the session's spec {argv[1]}: {e}", file=sys.stderr
        )
        return 126
    env = dict(spec["env"])
    for name in KEEP:
        if name in os.environ:
            env[name] = os.environ[name]
    try:
        os.chdir(spec["cwd"])
    except OSError as e:
        print(f"claude-bridge runner: can't enter {spec['cwd']}: {e}", file=sys.stderr)
        return 126
    # Like a shell: the terminal's signals are for the program in the foreground.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvpe(spec["argv"][0], spec["argv"], env)
        except OSError as e:
            print(f"claude-bridge runner: can't start {spec['argv'][0]}: {e}", file=sys.stderr)
        os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says
    # tmux does not always record a dead pane's status (3.3a misses about one in twenty):
    # the runner reads it here
    status_file = spec.get("status_file")
    if status_file:
        try:
            with open(status_file, "w", encoding="utf-8") as f:
                json.dump({"status": code}, f)
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
