"""What the edges (REST and Socket.IO) share: who the client is, and how often it may ask."""
