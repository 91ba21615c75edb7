"""A tiny stdio MCP server whose one tool returns an image, as a browser screenshot tool does.

``python -m tests.e2e.image_mcp <file>``: the tool ``screenshot`` answers with the bytes of
``<file>`` as MCP image content (its type from the file's suffix) and a line of text. Used to
capture what Claude Code's PostToolUse carries for an MCP tool's image, and in the end-to-end
tests of that path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import Image, MCPServer


def main() -> None:
    path = Path(sys.argv[1])
    server = MCPServer("images")

    @server.tool(structured_output=False)
    def screenshot() -> list[Image | str]:
        """A screenshot of the page."""
        return [Image(data=path.read_bytes(), format=path.suffix.lstrip(".")), "the page"]

    server.run()


if __name__ == "__main__":
    main()
