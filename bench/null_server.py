"""A do-nothing hook server: the load generator's floor.

``python -m bench.null_server PORT`` answers ``POST /claude/v1/hooks`` with ``{}`` after reading
the body, on aiohttp like the bridge, in a process of its own like the bridge. What a hook's
acknowledgement costs against it is what the load generator, the kernel and aiohttp cost, with
no store and no bridge. It runs on the event loop the bridge runs on by default
(``event_loop: auto``), so the floor is that loop's, not a slower one's.
"""

from __future__ import annotations

import sys

from aiohttp import web

from claude_bridge.event_loop import EventLoop, loop_factory


async def _hook(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({})


def main() -> None:
    app = web.Application()
    app.router.add_post("/claude/v1/hooks", _hook)
    factory = loop_factory(EventLoop.AUTO)
    loop = factory() if factory is not None else None
    print("null server ready", flush=True)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=loop
    )


if __name__ == "__main__":
    main()
