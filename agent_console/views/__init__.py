"""Feature modules of the console; each has ``routes = RouteTable(...)`` listed in ``agent_console.app.FEATURES``."""
