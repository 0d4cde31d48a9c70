"""The wallet web app (web/) for the gateway: built with npm when its sources changed.

`make run` and the e2e stack build it before the gateway starts; the build is skipped when the
hash of its sources matches the one recorded by the last build (web/dist/.build-stamp). Without
Node.js the stack runs without the app and says how to get it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DIST = WEB / "dist"
STAMP = DIST / ".build-stamp"
SOURCES = ("index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")
SOURCE_DIRS = (WEB / "src", WEB / "public", ROOT / "sdk" / "typescript" / "src")
MINIMUM_NODE = (20, 19)
"""What Vite needs (package.json's engines)."""
NODE_HELP = (
    "the wallet app at / is not built: it needs Node.js 20.19+ with npm, not found here (the "
    "API is served as usual). Install it (https://nodejs.org; Debian trixie or newer: "
    "`apt-get install nodejs npm`; macOS: `brew install node`) and start again."
)


class WebBuildError(RuntimeError):
    """npm ci or the build failed."""


def sources_hash() -> str:
    """SHA-256 over the paths and contents of everything the build reads."""
    files = [WEB / name for name in SOURCES]
    for folder in SOURCE_DIRS:
        if folder.is_dir():
            files.extend(path for path in folder.rglob("*") if path.is_file())
    digest = hashlib.sha256()
    for path in sorted(files):
        if not path.is_file() or ".test." in path.name:
            continue
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def find_npm() -> str | None:
    """The npm binary, when Node.js MINIMUM_NODE or newer is installed."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        return None
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    try:
        major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    except ValueError:
        return None
    return npm if (major, minor) >= MINIMUM_NODE else None


def is_built() -> bool:
    """True when web/dist holds a build of the current sources."""
    return (
        (DIST / "index.html").is_file()
        and STAMP.is_file()
        and (STAMP.read_text().strip() == sources_hash())
    )


def _run(argv: list[str], output: Callable[[str, str], None]) -> None:
    env = {**os.environ, "CI": "1", "NO_UPDATE_NOTIFIER": "1"}
    result = subprocess.run(
        argv, cwd=WEB, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    for line in (result.stdout + result.stderr).splitlines()[-20:]:
        output("web", line)
    if result.returncode != 0:
        raise WebBuildError(f"`{' '.join(argv[1:])}` in web/ failed (exit {result.returncode})")


def build_web_app(output: Callable[[str, str], None]) -> str | None:
    """Build web/dist when its sources changed; the reason when the app cannot be built."""
    if is_built():
        return None
    npm = find_npm()
    if npm is None:
        return NODE_HELP
    lock = WEB / "package-lock.json"
    installed = WEB / "node_modules" / ".package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        output("web", "installing the app's packages (npm ci)")
        _run([npm, "ci", "--no-audit", "--no-fund"], output)
    output("web", "building the wallet app (npm run build)")
    expected = sources_hash()
    _run([npm, "run", "build"], output)
    STAMP.write_text(expected + "\n")
    return None


def main() -> int:
    """`python -m stack.web`: build web/dist when stale; 1 when it cannot be built."""
    try:
        reason = build_web_app(lambda name, line: print(f"{name} | {line}", file=sys.stderr))
    except WebBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
