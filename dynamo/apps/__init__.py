"""Application side: the child runner, states, exit codes, authorization checks."""
