"""`cloudmig account create|reset-password`: roles on an instance (CreateAccount, ResetAccountPassword)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudmig.cli.client import api_from_env
from cloudmig.cli.instance import InstanceArg
from cloudmig.cli.output import command_group, handle_errors
from cloudmig.cli.secrets import read_secret

account_app = command_group("Accounts (roles) on an instance: create one, set a password.")

NameOpt = Annotated[str, typer.Option("--name", metavar="ROLE", help="The role's name.")]
AccountPasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        metavar="FILE",
        help="Read the password from this file (its first line); '-': stdin.",
    ),
]
AccountPasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VARIABLE",
        help="Read the password from this environment variable (default CLOUDMIG_ACCOUNT_PASSWORD).",
    ),
]
ENV_ACCOUNT_PASSWORD = "CLOUDMIG_ACCOUNT_PASSWORD"  # noqa: S105  (a variable name)


@account_app.command("create")
@handle_errors
def create(
    instance_id: InstanceArg,
    name: NameOpt,
    superuser: Annotated[bool, typer.Option("--super", help="A superuser (AccountType Super).")] = False,
    description: Annotated[str | None, typer.Option(metavar="TEXT", help="A note on the role.")] = None,
    password_file: AccountPasswordFileOpt = None,
    password_env: AccountPasswordEnvOpt = None,
) -> None:
    """Create a login role with a password (never given as a flag)."""
    password = read_secret("Account password", password_file, password_env, ENV_ACCOUNT_PASSWORD)
    api = api_from_env()
    api.create_account(instance_id, name, password, superuser=superuser, description=description)
    attr = api.instance(instance_id)
    typer.echo(
        f"account {name} created on {instance_id}; log in with: psql -h {attr.get('ConnectionString')} "
        f"-p {attr.get('Port')} -U {name} postgres"
    )


@account_app.command("reset-password")
@handle_errors
def reset_password(
    instance_id: InstanceArg,
    name: NameOpt,
    password_file: AccountPasswordFileOpt = None,
    password_env: AccountPasswordEnvOpt = None,
) -> None:
    """Set a new password for a role, such as one that came from the source without any."""
    password = read_secret("New password", password_file, password_env, ENV_ACCOUNT_PASSWORD)
    api_from_env().reset_account_password(instance_id, name, password)
    typer.echo(f"password of {name} on {instance_id} set")
