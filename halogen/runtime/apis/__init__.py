"""The APIs, one module or package per family: `openai` (and llama.cpp's own routes),
`anthropic`, `ollama/`, and llama-swap's `management` routes. Each family registers its routes
with the error shape its clients read (halogen.runtime.base.shapes)."""
