"""Outbound messaging (operations.md §5, §8): channel adapters (`adapters`), the send/poll and
logout services (`services`) and the channels.status query (`queries`)."""
