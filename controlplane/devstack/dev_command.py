"""`telemed dev` (``make run``): the whole system on this machine with local
defaults.  Starts Redis and PostgreSQL under the data folder (unless
``REDIS_URL`` / ``DATABASE_URL`` are set), one SFU node, a TURN server (coturn,
unless ``TELEMED_TURN_HOSTS`` names one) and the control plane;
generates the secrets once into ``dev-env.json`` (0600); stops everything on
Ctrl-C or SIGTERM, or when one of the processes dies."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from controlplane.clinical.field_crypto import FieldCipher
from controlplane.devstack import services as ls
from controlplane.devstack.coturn import start_coturn
from controlplane.devstack.local_ca import server_certificate

DEV_ENV_FILE = "dev-env.json"
# coturn's relay ports (the SFU's are 40000-49999).
TURN_RELAY_PORTS = (50000, 50999)


def _dev_env(data_dir: Path) -> dict[str, str]:
    """Settings of the local system started by `telemed dev` (secrets persist across runs)."""
    path = data_dir / DEV_ENV_FILE
    env: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    env.setdefault("TELEMED_JWT_SECRET", secrets.token_urlsafe(48))
    env.setdefault("SFU_SECRET", secrets.token_urlsafe(32))
    env.setdefault("TELEMED_TURN_SECRET", secrets.token_urlsafe(32))
    if "TELEMED_DATA_KEYS" not in env:
        env["TELEMED_DATA_KEYS"] = FieldCipher.generate_spec()
    return env


def _save_dev_env(data_dir: Path, env: dict[str, str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_ENV_FILE
    path.write_text(json.dumps(env, indent=2, sort_keys=True))
    path.chmod(0o600)


def lan_address() -> str:
    """The address this machine reaches its network from (nothing is sent), or
    127.0.0.1 when it has no route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a documentation address: only routing is asked
            address: str = probe.getsockname()[0]
            return address
        except OSError:
            return "127.0.0.1"


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    env = _dev_env(data_dir)
    host: str = args.host or (lan_address() if args.https else "127.0.0.1")
    started: list[ls.ManagedProcess] = []
    try:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = ls.start_redis(data_dir / "redis", port=args.redis_port)
            started.append(redis)
            redis_url = redis.url
        database_url = os.environ.get("DATABASE_URL", "")
        database_admin_url = os.environ.get("DATABASE_ADMIN_URL", "")
        if not database_url and not args.only_sfu:
            postgres = ls.start_postgres(data_dir / "postgres", port=args.postgres_port)
            started.append(postgres)
            database_url, database_admin_url = postgres.url, postgres.admin_url
        env.update(
            {
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "DATABASE_ADMIN_URL": database_admin_url,
            }
        )
        sfu = ls.start_sfu_node(
            data_dir / "logs",
            redis_url=redis_url,
            secret=env["SFU_SECRET"],
            port=args.sfu_port,
            node_id="sfu-local",
            extra_env={"SFU_RTC_LISTEN_IP": host},
        )
        started.append(sfu)
        if args.only_sfu:
            _save_dev_env(data_dir, env)
            print(
                f"SFU node sfu-local is running at {sfu.url} (registered in Redis)",
                flush=True,
            )
            return _supervise(started)
        turn_env = _turn(args, data_dir, env, host, started)
        scheme, tls_env = "http", {}
        if args.https:
            tls = server_certificate(data_dir / "tls", [host])
            scheme = "https"
            tls_env = {"TELEMED_TLS_CERT": str(tls.cert), "TELEMED_TLS_KEY": str(tls.key)}
        env["TELEMED_PUBLIC_URL"] = f"{scheme}://{host}:{args.port}"
        cp_env = {**env, **turn_env, **tls_env}
        control = ls.start_control_plane(data_dir / "logs", cp_env, port=args.port, host=host)
        started.append(control)
        _save_dev_env(data_dir, env)
        print(f"telemed is running at {control.url}", flush=True)
        print(f"  health:   {control.url}/health", flush=True)
        turn_where = f"{turn_env['TELEMED_TURN_HOSTS']} port {turn_env['TELEMED_TURN_PORT']}"
        print(f"  TURN:     {turn_where}", flush=True)
        if args.https:
            print(f"  HTTPS:    certificate signed by the local CA {tls.ca_cert}", flush=True)
            print(f"            SHA-256 {tls.ca_fingerprint}", flush=True)
            print("            trust that CA on each device that opens the page", flush=True)
            print("            (README: 'On other devices: HTTPS on a LAN address')", flush=True)
        print("  try it:   .venv/bin/telemed links   (a physician and a patient link)", flush=True)
        print(f"  logs:     {data_dir / 'logs'}  (Ctrl-C stops everything)", flush=True)
        return _supervise(started)
    except ls.ServiceError as exc:
        print(f"telemed dev: {exc}", file=sys.stderr)
        return 1
    finally:
        for process in reversed(started):
            process.stop()


def _turn(
    args: argparse.Namespace,
    data_dir: Path,
    env: dict[str, str],
    host: str,
    started: list[ls.ManagedProcess],
) -> dict[str, str]:
    """A local coturn on ``host`` unless TELEMED_TURN_HOSTS names a TURN server."""
    if os.environ.get("TELEMED_TURN_HOSTS"):
        return {
            "TELEMED_TURN_HOSTS": os.environ["TELEMED_TURN_HOSTS"],
            "TELEMED_TURN_PORT": os.environ.get("TELEMED_TURN_PORT", "3478"),
        }
    started.append(
        start_coturn(
            data_dir / "turn",
            secret=env["TELEMED_TURN_SECRET"],
            listen_ip=host,
            port=args.turn_port,
            relay_min_port=TURN_RELAY_PORTS[0],
            relay_max_port=TURN_RELAY_PORTS[1],
        )
    )
    return {"TELEMED_TURN_HOSTS": host, "TELEMED_TURN_PORT": str(args.turn_port)}


def _supervise(started: list[Any]) -> int:
    """Wait for Ctrl-C / SIGTERM; fail as soon as one of the processes dies."""
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop["now"]:
        for process in started:
            if not process.alive():
                print(f"{process.name} exited:\n{process.log_tail()}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0
