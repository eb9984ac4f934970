"""Ollama's API: `translate` (pure: Ollama's requests to OpenAI's and the answers back) and
`routes` (the HTTP handlers around it)."""
