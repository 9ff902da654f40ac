"""The composition root: settings, the HTTP API, the `lineage` CLI and the demo."""
