"""The public OpenAPI document of each service, as the gateway exposes it, for the TypeScript SDK.

    python -m stack.openapi            # write sdk/typescript/openapi/<service>.json
    python -m stack.openapi --check    # exit 1 when a written document differs from the code

Only what the gateway routes is public: the service-to-service routes (`/internal/...`) and the
operational ones (`/health/...`, `/metrics`) are left out, so the SDK offers nothing a client
of the gateway cannot call.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from micropay_common.services import SERVICES, ServiceName

ROOT = Path(__file__).resolve().parent.parent
OPENAPI_DIR = ROOT / "sdk" / "typescript" / "openapi"


def public_document(service: ServiceName) -> dict[str, Any]:
    """The service's OpenAPI document without the routes the gateway never forwards."""
    spec = SERVICES[service]
    document: dict[str, Any] = importlib.import_module(f"{spec.package}.main").app.openapi()
    paths = {
        path: item
        for path, item in document.get("paths", {}).items()
        if path == spec.prefix or path.startswith(spec.prefix + "/")
        if "/internal/" not in path + "/"
    }
    return {**document, "paths": paths}


def rendered(service: ServiceName) -> str:
    """The document as it is written to the repository (stable key order, one trailing newline)."""
    return json.dumps(public_document(service), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the documents, or with --check report the ones that are out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OPENAPI_DIR)
    args = parser.parse_args(argv)
    stale = []
    for service in SERVICES:
        path: Path = args.out / f"{service}.json"
        text = rendered(service)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print(
            "out of date with the services: " + ", ".join(stale) + "\nregenerate: make sdk",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
