"""Which models run: the pure `planner`, the `eviction` policies (llama-swap's group and matrix
Swappers), the `selectors`, and the `swapper` that carries the decisions out."""
