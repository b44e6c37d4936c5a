"""Thin entry points: dynamod, dynamo, dynamo-inject, dynamo-exec-auth, dynamo-user-auth."""
