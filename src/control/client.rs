//! The client side of the control socket: connect, send one request, read responses.
