"""Agents and their soul/identity files (agents.*, agents.files.*; chat-sessions-cron.md §6).
Rows live in the database (README D7); `main` always exists, and agents listed in the config
document's agents.list are shown beside the rows (read-only here: config.patch edits them)."""
