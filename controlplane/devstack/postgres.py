"""A local PostgreSQL for development and tests: a cluster under a folder of the
caller's (or, where the postgres user cannot reach that folder, under
/var/lib/telemed), run as the ``postgres`` user when started as root, with an owner role
(``telemed``, migrations) and the application role (``telemed_app``)."""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from controlplane.devstack.processes import (
    ManagedProcess,
    ServiceError,
    free_port,
    spawn,
    tcp_open,
    wait_ready,
)


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"PostgreSQL's {name} is not installed (run `make setup`)")
    return found


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run it as the `postgres` system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _secret_file(path: Path) -> str:
    """A random secret generated once into a 0600 file and read back afterwards."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


# Clusters whose folder the postgres user cannot reach (see _cluster_home).
RELOCATED_ROOT = Path("/var/lib/telemed/dev-postgres")


def _cluster_home(data_dir: Path) -> Path:
    """Where the cluster's own files go: ``data_dir`` when the postgres user can
    reach it; otherwise (a checkout in root's home, mode 700) a folder under
    RELOCATED_ROOT named after ``data_dir``, so the same checkout finds its
    database again.  Passwords and the log stay in ``data_dir``."""
    if os.geteuid() != 0:
        return data_dir
    postgres_user = pwd.getpwnam("postgres")
    os.chown(data_dir, postgres_user.pw_uid, postgres_user.pw_gid)
    reachable = subprocess.run(
        _as_postgres_user(["test", "-w", str(data_dir)]), capture_output=True, check=False
    )
    if reachable.returncode == 0:
        return data_dir
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    home = RELOCATED_ROOT / digest
    home.mkdir(parents=True, exist_ok=True)
    (home / "data-dir").write_text(f"{data_dir.resolve()}\n")  # whose cluster this is
    os.chown(home, postgres_user.pw_uid, postgres_user.pw_gid)
    return home


def start_postgres(data_dir: Path, port: int | None = None) -> ManagedProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    home = _cluster_home(data_dir)
    pgdata = home / "pgdata"
    socket_dir = home / "socket"
    password_file = data_dir / "password"
    password = _secret_file(password_file)
    socket_dir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        postgres_user = pwd.getpwnam("postgres")
        os.chown(socket_dir, postgres_user.pw_uid, postgres_user.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        pwfile = home / "initpw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        try:
            subprocess.run(
                _as_postgres_user(
                    [
                        _pg_bin("initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        "telemed",
                        "--pwfile",
                        str(pwfile),
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
    process = spawn(
        "postgres",
        _as_postgres_user(
            [
                _pg_bin("postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-k",
                str(socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
            ]
        ),
        data_dir / "postgres.log",
    )
    wait_ready(process, lambda: tcp_open(port), 30)
    env = {**os.environ, "PGPASSWORD": password}

    def psql(database: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """psql as the owner role over TCP."""
        argv = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "telemed"]
        return subprocess.run(
            [*argv, "-d", database, *args], capture_output=True, env=env, check=check
        )

    exists = psql(
        "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'telemed'", check=False
    )
    if exists.stdout.strip() != b"1":
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "telemed", "telemed"],
            check=True,
            capture_output=True,
            env=env,
        )
    app_password = _secret_file(data_dir / "app-password")
    # The application role: no superuser, no ownership; migrations grant it what it needs.
    psql(
        "telemed",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemed_app') THEN "
        f"CREATE ROLE telemed_app LOGIN PASSWORD '{app_password}'; END IF; END $$; "
        "GRANT CONNECT ON DATABASE telemed TO telemed_app;",
    )
    process.admin_url = f"postgresql://telemed:{password}@127.0.0.1:{port}/telemed"
    process.url = f"postgresql://telemed_app:{app_password}@127.0.0.1:{port}/telemed"
    return process
