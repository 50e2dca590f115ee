"""Telemedicine control plane: REST, Socket.IO signaling and SFU orchestration."""
