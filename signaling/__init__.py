"""Socket.IO signaling: one handler per event; validation in schemas/, logic in the
media services."""
