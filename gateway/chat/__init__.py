"""Sessions and transcripts: keys, the session entry and its transcript (chat-sessions-cron.md §1)."""
