"""``dynamo-user-auth``: manage users, their certificate DNs and roles.

    dynamo-user-auth --user alice --dn '/C=US/O=Example/CN=Alice' [--email a@x.org]
    dynamo-user-auth --user alice --role admin --target inventory [--revoke]
    dynamo-user-auth --user alice --delete
    dynamo-user-auth --list

Runs on the server host with the server's configuration: it writes the
registry directly (this is how the first administrators are made).
Roles: admin, operator. Targets: inventory, application.
"""

from __future__ import annotations

import argparse

from dynamo.cli.client import configuration, fail
from dynamo.cli.usage import UsageParser, refuse_unused
from dynamo.errors import DynamoError
from dynamo.exitcodes import ClientExit
from dynamo.store import open_store
from dynamo.store.registry import ROLES, TARGETS, Registry
from dynamo.store.sql import SQLStore


def main(argv: list[str] | None = None) -> None:
    p = UsageParser(prog="dynamo-user-auth", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="the server's configuration file (default: $DYNAMO_CONFIG or embedded)")
    p.add_argument("-u", "--user", help="user name (local users: their Unix login name)")
    p.add_argument("-n", "--dn", help="certificate subject, e.g. /C=US/O=Example/CN=Alice")
    p.add_argument("-m", "--email", default="")
    p.add_argument("-r", "--role", choices=ROLES)
    p.add_argument("-g", "--target", choices=TARGETS)
    mode = p.add_mutually_exclusive_group()  # add or update (the default), revoke, delete or list: one per call
    mode.add_argument("-R", "--revoke", action="store_true", help="take the role away")
    mode.add_argument("-D", "--delete", action="store_true", help="delete the user")
    mode.add_argument("-L", "--list", action="store_true")
    args = p.parse_args(argv)
    refuse_ignored(p, args)
    config = configuration(args)
    try:
        password_file = config.store.password_file
        store = open_store(config.store.url, password_file=str(config.path(password_file)) if password_file else None)
        assert isinstance(store, SQLStore)
        try:
            manage(args, Registry(store))
        finally:
            store.close()
    except DynamoError as exc:
        fail(str(exc), 1)


def refuse_ignored(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What --list, --delete and --revoke would not use is a usage error, not silently dropped."""
    details = {"dn": "--dn", "email": "--email"}
    if args.list:
        refuse_unused(p, args, "--list", {"user": "--user", **details, "role": "--role", "target": "--target"})
    elif args.delete:
        refuse_unused(p, args, "--delete", {**details, "role": "--role", "target": "--target"})
    elif args.revoke:
        refuse_unused(p, args, "--revoke", details)


def manage(args: argparse.Namespace, registry: Registry) -> None:
    if args.list:
        for user in registry.users():
            roles = ", ".join(f"{r} on {t}" for r, t in sorted(user.roles)) or "no roles"
            print(f"{user.name:16} {user.dn or '-':48} {user.email or '-':24} {roles}")
        return
    if not args.user:
        fail("--user is required (or --list)", ClientExit.USAGE)
    if args.delete:
        print(f"deleted user {args.user!r}" if registry.delete_user(args.user) else f"no user {args.user!r}")
        return
    if (args.role is None) != (args.target is None):
        fail("--role and --target go together", ClientExit.USAGE)
    if args.revoke:
        if args.role is None:
            fail("--revoke needs --role and --target", ClientExit.USAGE)
        registry.revoke(args.user, args.role, args.target)
    else:
        registry.add_user(args.user, args.dn, args.email)
        if args.role:
            registry.grant(args.user, args.role, args.target)
    found = registry.user_by_name(args.user)
    if found is None:
        fail(f"no user {args.user!r}", 1)
    roles = ", ".join(f"{r} on {t}" for r, t in sorted(found.roles)) or "no roles"
    print(f"{found.name}: dn {found.dn or '-'}, email {found.email or '-'}; {roles}")


if __name__ == "__main__":
    main()
