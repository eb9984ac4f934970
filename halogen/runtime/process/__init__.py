"""A model's server as the proxy runs it: its process, and the pooled clients that talk to it."""
