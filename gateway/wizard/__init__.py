"""The onboarding wizard over RPC (wizard.*, operations.md §12). A session is a database row
(README D7), so any gateway process can answer its steps; at most one runs at a time."""
