"""The application server side of dynamod: listeners, client connections, identities, request handlers."""
