"""The gateway's request handlers, one module per contract (``gateway.routes`` maps them to URLs)."""
