"""The manager daemon: Raft wiring, join tokens, membership, the API and metrics servers."""
