"""Scoped Tiled API keys for the listener, the flows and the readers (deploy/tiled/config.yml).

The deployed Tiled server authenticates with principals, not one shared key: an administrator
(a password login of the config's ``toy`` provider, for provisioning only) creates a *service
principal* per role and an API key for each, limited to the role's scopes. A reader's key can
read and nothing else; the listener's and the flows' keys can create and write nodes (and delete
the two things they delete: a raw run written in part, which the listener rewrites, and a
refinement claim being released), but cannot manage principals or keys.

    TILED_ADMIN_PASSWORD=... python -m xrd_strain_plugin.tiled.keys --tiled-url http://tiled-host:8000

prints one line ``ROLE=KEY`` per role (put the listener's into listen.env as ``TILED_API_KEY``,
the flows' into flows.env or its Prefect Secret block, the readers' where people read).
"""

from __future__ import annotations

import argparse
import os
import sys

#: The environment variable holding a Tiled API key, wherever a key is not given explicitly: the
#: command line (``--api-key``'s default), the listener's unit (listen.env) and the flows.
from xrd_strain_plugin.results import API_KEY_ENV  # noqa: F401  (re-exported: flows import it here)

#: Scopes of each role's key (Tiled's scope names).
ROLE_SCOPES = {
    "listener": [
        "read:metadata",
        "read:data",
        "create:node",
        "write:metadata",
        "write:data",
        "delete:revision",
        "delete:node",
    ],
    "flows": [
        "read:metadata",
        "read:data",
        "create:node",
        "write:metadata",
        "write:data",
        "delete:revision",
        "delete:node",
    ],
    "reader": ["read:metadata", "read:data"],
}
PROVIDER = "toy"  # the config's password provider (DictionaryAuthenticator): the administrator only


def create_scoped_keys(
    url: str, *, admin: str, password: str, roles=tuple(ROLE_SCOPES), provider: str = PROVIDER, timeout_s: float = 30.0
) -> dict[str, str]:
    """Log in as the administrator, make one service principal and one scoped key per role.

    Returns
    -------
    dict
        role -> API key secret (shown once: Tiled keeps only its hash).

    Raises
    ------
    PermissionError
        If the login is refused.
    httpx.HTTPError
        If the server is unreachable or refuses a step.
    """
    import httpx

    base = url.rstrip("/")
    base = base[: -len("/api/v1")] if base.endswith("/api/v1") else base
    with httpx.Client(base_url=f"{base}/api/v1", timeout=timeout_s) as http:
        response = http.post(f"/auth/provider/{provider}/token", data={"username": admin, "password": password})
        if response.status_code in (401, 403):
            raise PermissionError(f"Tiled at {base} refused the login of {admin!r} ({response.status_code})")
        response.raise_for_status()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        keys = {}
        for role in roles:
            principal = http.post("/auth/principal", params={"role": "user"}, headers=headers)
            principal.raise_for_status()
            uuid = principal.json()["uuid"]
            key = http.post(
                f"/auth/principal/{uuid}/apikey",
                headers=headers,
                json={"scopes": ROLE_SCOPES[role], "note": f"xrd-strain {role}", "expires_in": None},
            )
            key.raise_for_status()
            keys[role] = key.json()["secret"]
        return keys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m xrd_strain_plugin.tiled.keys",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tiled-url", metavar="URL", help="the Tiled server (required)")
    p.add_argument("--tiled", dest="tiled_url", help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--admin", default="admin", help="the administrator's user name (default: %(default)s)")
    p.add_argument(
        "--role",
        action="append",
        choices=sorted(ROLE_SCOPES),
        help="make a key for this role only (repeatable; default: all)",
    )
    args = p.parse_args(argv)
    if not args.tiled_url:
        p.error("the following arguments are required: --tiled-url")
    password = os.environ.get("TILED_ADMIN_PASSWORD")
    if not password:
        print("set TILED_ADMIN_PASSWORD (the administrator's password from tiled.env)", file=sys.stderr)
        return 2
    try:
        keys = create_scoped_keys(
            args.tiled_url, admin=args.admin, password=password, roles=tuple(args.role or ROLE_SCOPES)
        )
    except PermissionError as exc:
        print(exc, file=sys.stderr)
        return 2
    for role, key in keys.items():
        print(f"{role}={key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
