"""A stand-in for the ``claude`` binary in the runner's unit tests (the end-to-end tests run the
real one): it shows its argv and environment, turns on bracketed paste like Claude Code's UI,
and then prints every input it gets as one line: ``PASTE:<text>``, ``LINE:<typed>`` on Enter,
``ESC``. ``/exit`` and Enter end it with status 0; a line ``die N`` with status N."""

import json
import os
import select
import sys
import termios
import tty

START, END = b"\x1b[200~", b"\x1b[201~"


def say(line: str) -> None:
    os.write(1, (line + "\r\n").encode())


def main() -> int:
    say("ARGV " + json.dumps(sys.argv[1:]))
    say(
        "ENV "
        + json.dumps(
            {
                k: os.environ.get(k)
                for k in (
                    "CLAUDE_BRIDGE_TOKEN",
                    "CLAUDE_BRIDGE_URL",
                    "RUNNER_TEST_MARK",
                    "TERM",
                    "TMUX_PANE",
                )
            }
        )
    )
    say("CWD " + os.getcwd())
    os.write(1, b"\x1b[?2004h")
    old = termios.tcgetattr(0)
    tty.setraw(0)
    buf, typed = b"", ""
    try:
        while True:
            if buf and not select.select([0], [], [], 0.3)[0]:
                say("ESC")  # a lone Escape, not the start of a paste
                buf = buf[1:]
                continue
            data = os.read(0, 4096)
            if not data:
                return 1
            buf += data
            while buf:
                if buf.startswith(START):
                    end = buf.find(END)
                    if end < 0:
                        break
                    say("PASTE:" + json.dumps(buf[len(START) : end].decode()))
                    buf = buf[end + len(END) :]
                elif buf.startswith(b"\x1b"):
                    if len(buf) < len(START) and START.startswith(buf):
                        break  # maybe the start of a paste
                    say("ESC")
                    buf = buf[1:]
                elif buf[:1] in (b"\r", b"\n"):
                    buf = buf[1:]
                    say("LINE:" + typed)
                    if typed == "/exit":
                        return 0
                    if typed.startswith("die "):
                        return int(typed[4:])
                    typed = ""
                else:
                    typed += buf[:1].decode(errors="replace")
                    buf = buf[1:]
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, old)


if __name__ == "__main__":
    sys.exit(main())
