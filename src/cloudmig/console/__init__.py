"""The web console at /console: server-rendered pages, vendored assets, no CDN."""
