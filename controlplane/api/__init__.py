"""REST API: thin handlers (schema -> service -> response), errors, OpenAPI, the web page."""
