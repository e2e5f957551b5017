"""Engine.IO + Socket.IO, both generations on one endpoint (Engine.IO 3/Socket.IO 4 and
Engine.IO 4/Socket.IO 5), built sans-IO: pure codecs, session state machines, and thin
tornado handlers that only move bytes."""
