"""dynamod: the long-running server process (main loop, children, signals, pid file, logs)."""
