"""Ollama's API: pure translation (`to_openai` for requests, `answers` and `stream` for what
comes back, `catalogue` for the model listings, `durations` for `keep_alive`) and `routes` (the
HTTP handlers around it)."""
