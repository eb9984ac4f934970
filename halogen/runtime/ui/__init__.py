"""The web UI at /ui: static pages and hand-written ES modules served from this package (no build
step, nothing fetched from elsewhere), and the one JSON document only halogen can give them,
memory (`memory.py`). Sits above the APIs it reads, below serve, which registers it."""
