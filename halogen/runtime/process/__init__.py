"""A model's llama-server as a process: spawning, health, stopping and reaping (`upstream`,
`reaper`, `deathsig`), its model files, and the pooled clients that talk to it (`pool`,
`dialing`)."""
