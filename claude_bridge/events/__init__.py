"""What a Claude Code hook event is: its input model (``models``), its kind and traits
(``catalogue``), and parsing a hook body (``parse``). The bottom layer: it imports nothing of
the bridge but ``ids``."""
