"""Agent runs: the run manager (queue per session, abort, leases), backends, and run events."""
