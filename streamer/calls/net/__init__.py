"""The network adapters for calls: the front door (websockets) and the AudioSocket listener."""
