"""The nginx gateway for the local stack: render gateway/nginx.conf and run nginx in a prefix."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_TEMPLATE = ROOT / "gateway" / "nginx.conf"
PLACEHOLDERS = (
    "GATEWAY_PORT",
    "AUTH_UPSTREAM",
    "PAYMENT_UPSTREAM",
    "TRANSACTIONS_UPSTREAM",
    "NOTIFICATIONS_UPSTREAM",
    "WEB_ROOT",
    "STRIPE_JS_URL",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_JS_ORIGINS",
)
WEB_DIST = ROOT / "web" / "dist"
WEB_DEFAULTS = {
    "WEB_ROOT": str(WEB_DIST),
    "STRIPE_JS_URL": "https://js.stripe.com/v3/",
    # Stripe's own list for a Content-Security-Policy: the script, its API, its frames.
    "STRIPE_JS_ORIGINS": "https://js.stripe.com https://api.stripe.com https://hooks.stripe.com",
}
"""The wallet app's placeholders when not given: the repository's build and Stripe itself."""
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class GatewayConfigError(RuntimeError):
    """nginx refused the rendered configuration."""


def find_nginx() -> str | None:
    """Path of the nginx binary, looking in sbin directories that a user's PATH may lack."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/opt/homebrew/bin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def render_gateway_config(values: Mapping[str, str], template: str | None = None) -> str:
    """gateway/nginx.conf with exactly the ${PLACEHOLDERS} replaced, as envsubst would."""
    values = {**WEB_DEFAULTS, **values}
    # Without a publishable key the app shows that card top-ups are unavailable.
    values.setdefault("STRIPE_PUBLISHABLE_KEY", "pk_unconfigured")
    missing = [name for name in PLACEHOLDERS if not values.get(name)]
    if missing:
        raise ValueError(f"gateway placeholders without a value: {', '.join(missing)}")
    text = GATEWAY_TEMPLATE.read_text() if template is None else template
    for name in PLACEHOLDERS:
        text = text.replace("${" + name + "}", values[name])
    return text


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class NginxFiles:
    """Where one gateway instance keeps its configuration, pid file and temp directories."""

    prefix: Path

    @property
    def main_config(self) -> Path:
        """The top-level configuration nginx is started with."""
        return self.prefix / "nginx.conf"

    @property
    def gateway_config(self) -> Path:
        """The rendered gateway/nginx.conf."""
        return self.prefix / "micropay.conf"

    @property
    def pid_file(self) -> Path:
        """nginx's pid file."""
        return self.prefix / "nginx.pid"


def write_nginx_config(prefix: Path, values: Mapping[str, str]) -> NginxFiles:
    """Render the gateway and wrap it in a main configuration that keeps every path in `prefix`."""
    prefix = prefix.resolve()
    files = NginxFiles(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    for name in _TEMP_DIRS:
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    files.gateway_config.write_text(render_gateway_config(values))
    temp_paths = "\n".join(
        f"    {name}_temp_path {_quoted(prefix / 'tmp' / name)};" for name in _TEMP_DIRS
    )
    files.main_config.write_text(
        "# Written by the local stack launcher from gateway/nginx.conf; edit that file instead.\n"
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        f"pid {_quoted(files.pid_file)};\n"
        "error_log stderr warn;\n"
        "\n"
        "events {\n"
        "    worker_connections 512;\n"
        "}\n"
        "\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}\n"
        f"    include {_quoted(files.gateway_config)};\n"
        "}\n"
    )
    return files


def nginx_command(nginx: str, files: NginxFiles, *, test: bool = False) -> list[str]:
    """The nginx command line for `files` (`-t` only checks the configuration)."""
    # -e: report start-up errors on stderr, not in the build's default log path, which a
    # normal user usually cannot write.
    argv = [nginx, "-p", f"{files.prefix}/", "-e", "stderr", "-c", str(files.main_config)]
    if test:
        argv.insert(1, "-t")
    return argv


def check_nginx_config(nginx: str, files: NginxFiles) -> None:
    """Run `nginx -t` on the configuration; raise GatewayConfigError with nginx's words."""
    result = subprocess.run(
        nginx_command(nginx, files, test=True),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise GatewayConfigError(
            f"nginx rejected {files.gateway_config}:\n{result.stderr.strip() or result.stdout}"
        )
