"""Live updates: broadcast.py (the one caller of the channel layer), payloads.py (the typed events
it sends), consumers.py and routing.py (the websockets that forward them to the pages)."""
