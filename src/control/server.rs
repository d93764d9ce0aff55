//! The daemon side of the control socket (built with the event loop).
