"""What every layer of the runtime shares: errors as data, each route family's error shape, logs,
metrics counters, and the facts `halogen build` wrote into the config (`locked`)."""
