"""marshmallow schemas for every Socket.IO event and REST body, and the error codes."""
