"""Backends for OpenAI-compatible HTTP servers: completions (all request kinds) and chat
completions (generation only). See completions.py and chat.py."""
