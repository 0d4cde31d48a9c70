"""The project's own import-linter contract type: the layers of a domain folder.

`make test` runs import-linter with the contracts in pyproject.toml; this one encodes the rules
of docs/conventions.md that the built-in contract types cannot say for every domain at once:

- a `router` never imports a `repository` (of its own domain or another);
- a `repository` imports neither a `service` nor a `router`, and a `service` no `router`;
- a domain reaches another domain through its public modules (`service`, `schemas`,
  `exceptions`, …), never through its `repository` or `router`.

A domain is a subpackage of a service package (`transactions_microservice.ledger`); the tests
of a service are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import grimp
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True)
class _Breach:
    importer: str
    imported: str
    rule: str
    lines: tuple[int, ...]


def _role(module: str) -> str:
    """The file a module is in a domain folder: router, service, repository, …"""
    return module.rsplit(".", 1)[-1]


def _domain(module: str, package: str) -> str | None:
    """`package.domain` for a module inside a domain folder, else None."""
    parts = module.split(".")
    if len(parts) < 3 or parts[0] != package or parts[1] == "tests":
        return None
    return ".".join(parts[:2])


class DomainLayersContract(Contract):
    """Routers, services and repositories import each other in one direction only."""

    type_name = "domain_layers"

    packages = fields.ListField(subfield=fields.StringField())
    broken_contract_guidance = fields.TextField(required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        """Every direct import inside the packages, held to the rules in the module docstring."""
        breaches: list[_Breach] = []
        for package in self.packages:  # type: ignore[attr-defined]
            for importer in sorted(graph.find_descendants(str(package))):
                importer_domain = _domain(importer, str(package))
                if importer_domain is None:
                    continue
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    imported_domain = _domain(imported, str(package))
                    if imported_domain is None:
                        continue
                    rule = _broken_rule(importer, importer_domain, imported, imported_domain)
                    if rule:
                        details = graph.get_import_details(importer=importer, imported=imported)
                        lines = tuple(sorted(detail["line_number"] for detail in details))
                        breaches.append(_Breach(importer, imported, rule, lines))
        return ContractCheck(kept=not breaches, metadata={"breaches": breaches})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One line per import that breaks a rule, with the rule and the line numbers."""
        for breach in check.metadata["breaches"]:
            lines = ", ".join(map(str, breach.lines))
            output.print_error(
                f"- {breach.importer} -> {breach.imported} (l.{lines}): {breach.rule}",
                bold=False,
            )
            output.new_line()
        guidance = self.broken_contract_guidance
        if guidance:
            output.print(str(guidance))


def _broken_rule(importer: str, importer_domain: str, imported: str, imported_domain: str) -> str:
    """The rule `importer -> imported` breaks, or an empty string."""
    importer_role, imported_role = _role(importer), _role(imported)
    if importer_role == "router" and imported_role == "repository":
        return "a router reaches data through its service, never a repository"
    if importer_role == "repository" and imported_role in ("service", "router"):
        return "a repository is SQL only: it imports no service or router"
    if importer_role == "service" and imported_role == "router":
        return "a service never imports a router"
    if importer_domain != imported_domain and imported_role in ("repository", "router"):
        return "another domain is reached through its service, not its repository or router"
    return ""
