"""Switchboard's gateway: accepts WebSockets, keeps local room membership and
fans messages out through a broker (Redis, or in-memory for one process)."""
