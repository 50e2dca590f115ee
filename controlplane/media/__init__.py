"""Live media of consultation rooms: membership, transports, producers, consumers,
SFU events, live room state in Redis and the media profiles."""
