"""The server: the process (`server`), the HTTP application (`app`) and the middlewares every
route shares, who may ask (`auth`, `hosts`, `origin`, `connections`), listening, and reloads of
the config (`reload`)."""
