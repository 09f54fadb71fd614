"""The webhook dispatcher tier (real Redis, real dispatcher processes, a real receiver)."""
