"""Skills (operations.md §7): SKILL.md parsing (`manifest`), install/update (`services`) and the
status report (`queries`). Skills live in the database; `skills.entries.<key>` in the config
holds enabling, API keys and env."""
