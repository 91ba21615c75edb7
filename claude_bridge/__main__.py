from __future__ import annotations

from claude_bridge.cli import main

raise SystemExit(main())
