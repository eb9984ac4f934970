"""Where a request goes and how its answer comes back: the name it means, the target (a local
model or a peer) and the one relay that streams every answer."""
