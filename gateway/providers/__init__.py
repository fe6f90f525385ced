"""Model providers: the key store behind anima.providers.* (chat-sessions-cron.md §4.2), the
endpoint and credentials each backend uses, and the catalog behind models.list (§4.3)."""
