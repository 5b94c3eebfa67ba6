//! Text formats of file sources and sinks: JSON lines and CSV (being built).
