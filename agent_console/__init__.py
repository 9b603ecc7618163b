"""Web console: pages, JSON API, WebSocket push, auth and roles, static assets."""
