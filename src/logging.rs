//! The event log: `RFC3339-timestamp LEVEL message`, one line per event, to `daemon.logfile`
//! and (in the foreground, unless `--quiet`) to stderr.
