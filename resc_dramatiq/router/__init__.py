"""The router process: take events reliably, plan, commit; supervision and heartbeats."""
