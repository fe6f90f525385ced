"""Voice: text-to-speech (`tts`), voice-wake triggers and talk mode (`services`) — operations.md §9."""
