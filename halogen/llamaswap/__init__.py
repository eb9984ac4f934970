"""The llama-swap config contract: written by `halogen build`, read by `halogen serve`.

`config` is the schema, `resolve` applies llama-swap's load-time rules (with `macros`, `routing`
and `selection`) and `resolved` holds what they give the runtime. Followed at llama-swap commit
0bdb3720199f530b622a1934c0db89f32c94819c (2026-08-22); citations of its files (internal/...)
in this package point to that commit."""
