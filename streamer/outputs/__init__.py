"""Where messages go (Sinks: the websocket hub, MQTT) and what the HTTP server and /metrics serve."""
