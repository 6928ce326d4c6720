"""The pure policy core: business time, policy schema, engine. No I/O, no clock reads."""
