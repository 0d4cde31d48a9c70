"""A database's schema as its catalogs describe it, and the differences between two of them.

    before = await schema_snapshot(conn_a)
    assert_same_schema(await schema_snapshot(conn_b), before)

The snapshot covers every schema but PostgreSQL's own: schemas (owner, privileges), tables,
views and sequences (owner, privileges per role, sequence parameters), columns (position, type,
nullability, default, identity, generation), every constraint (`pg_get_constraintdef`), every
index (`pg_get_indexdef`), triggers, functions, the service roles' attributes and memberships,
database and default privileges, extensions and the migration version.
"""

# ruff: noqa: S608 - catalog queries assembled from this module's own constants

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from micropay_common.services import SERVICES

SERVICE_ROLES = tuple(spec.role for spec in SERVICES.values())

# Schemas PostgreSQL keeps for itself.
_OURS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"


def _acl(column: str, kind: str, owner: str) -> str:
    """SQL for an ACL as sorted `grantee=privilege/grantor` text (defaults when NULL)."""
    return f"""ARRAY(
        SELECT format('%s=%s%s/%s',
                      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                      a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END,
                      pg_get_userbyid(a.grantor))
        FROM aclexplode(coalesce({column}, acldefault('{kind}', {owner}))) a ORDER BY 1)"""


async def schema_snapshot(
    conn: asyncpg.Connection, roles: Sequence[str] = SERVICE_ROLES
) -> dict[str, Any]:
    """Everything the catalogs say about the schema of `conn`'s database (see the module)."""
    snapshot: dict[str, Any] = {}
    snapshot["schemas"] = {
        row["nspname"]: {"owner": row["owner"], "privileges": row["acl"]}
        for row in await conn.fetch(
            f"""SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner,
                       {_acl("n.nspacl", "n", "n.nspowner")} AS acl
                FROM pg_namespace n WHERE {_OURS}"""
        )
    }
    relations: dict[str, dict[str, Any]] = {}
    for row in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname AS name, c.relkind, c.relpersistence,
                   c.relrowsecurity, pg_get_userbyid(c.relowner) AS owner,
                   {_acl("c.relacl", "r", "c.relowner")} AS table_acl,
                   {_acl("c.relacl", "s", "c.relowner")} AS sequence_acl,
                   CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS view,
                   s.seqtypid::regtype::text AS seq_type, s.seqstart, s.seqincrement, s.seqmax,
                   s.seqmin, s.seqcache, s.seqcycle
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
            WHERE {_OURS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"""
    ):
        sequence = row["relkind"] == "S"
        relations[row["name"]] = {
            "kind": row["relkind"],
            "persistence": row["relpersistence"],
            "row_security": row["relrowsecurity"],
            "owner": row["owner"],
            "privileges": row["sequence_acl"] if sequence else row["table_acl"],
            "view": row["view"],
            "sequence": (
                [row[key] for key in ("seq_type", "seqstart", "seqincrement", "seqmax")]
                + [row[key] for key in ("seqmin", "seqcache", "seqcycle")]
                if sequence
                else None
            ),
            "columns": {},
            "constraints": {},
            "indexes": {},
            "triggers": {},
        }
    for row in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname AS relation, a.attname,
                   row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) AS position,
                   format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity, a.attgenerated,
                   co.collname AS collation
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
            WHERE {_OURS} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              AND a.attnum > 0 AND NOT a.attisdropped"""
    ):
        relations[row["relation"]]["columns"][row["attname"]] = {
            "position": row["position"],
            "type": row["type"],
            "not_null": row["attnotnull"],
            "default": row["default"],
            "identity": row["attidentity"],
            "generated": row["attgenerated"],
            "collation": row["collation"],
        }
    for row in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname AS relation, con.conname, con.contype,
                   pg_get_constraintdef(con.oid) AS definition, con.condeferrable,
                   con.condeferred, con.convalidated
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {_OURS}"""
    ):
        relations[row["relation"]]["constraints"][row["conname"]] = [
            row[key]
            for key in ("contype", "definition", "condeferrable", "condeferred", "convalidated")
        ]
    for row in await conn.fetch(
        f"""SELECT n.nspname || '.' || t.relname AS relation, i.relname AS index,
                   pg_get_indexdef(x.indexrelid) AS definition, x.indisvalid,
                   pg_get_userbyid(i.relowner) AS owner
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE {_OURS}"""
    ):
        relations[row["relation"]]["indexes"][row["index"]] = [
            row["definition"],
            row["indisvalid"],
            row["owner"],
        ]
    for row in await conn.fetch(
        f"""SELECT n.nspname || '.' || c.relname AS relation, t.tgname,
                   pg_get_triggerdef(t.oid) AS definition, t.tgenabled
            FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {_OURS} AND NOT t.tgisinternal"""
    ):
        relations[row["relation"]]["triggers"][row["tgname"]] = [
            row["definition"],
            row["tgenabled"],
        ]
    snapshot["relations"] = relations
    snapshot["functions"] = {
        f"{row['nspname']}.{row['proname']}({row['args']})": [
            row["kind"],
            row["result"],
            row["prosrc"],
            row["owner"],
            row["acl"],
        ]
        for row in await conn.fetch(
            f"""SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
                       p.prokind AS kind, pg_get_function_result(p.oid) AS result, p.prosrc,
                       pg_get_userbyid(p.proowner) AS owner,
                       {_acl("p.proacl", "f", "p.proowner")} AS acl
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE {_OURS}"""
        )
    }
    snapshot["roles"] = {
        row["rolname"]: {key: value for key, value in row.items() if key != "rolname"}
        for row in await conn.fetch(
            """SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
                      r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                      r.rolvaliduntil,
                      ARRAY(SELECT pg_get_userbyid(m.roleid) FROM pg_auth_members m
                            WHERE m.member = r.oid ORDER BY 1) AS member_of
               FROM pg_roles r WHERE r.rolname = ANY($1::text[])""",
            list(roles),
        )
    }
    snapshot["database_privileges"] = await conn.fetchval(
        f"""SELECT {_acl("d.datacl", "d", "d.datdba")}
            FROM pg_database d WHERE d.datname = current_database()"""
    )
    snapshot["default_privileges"] = sorted(
        f"{row['owner']} {row['schema']} {row['kind']} {row['acl']}"
        for row in await conn.fetch(
            """SELECT pg_get_userbyid(d.defaclrole) AS owner, d.defaclnamespace::regnamespace::text
                      AS schema, d.defaclobjtype AS kind, d.defaclacl::text AS acl
               FROM pg_default_acl d"""
        )
    )
    snapshot["extensions"] = sorted(
        await conn.fetchval("SELECT array_agg(extname || ' ' || extversion) FROM pg_extension")
    )
    has_version = await conn.fetchval("SELECT to_regclass('migrations.alembic_version')")
    snapshot["version"] = (
        sorted(await conn.fetchval("SELECT array_agg(version_num) FROM migrations.alembic_version"))
        if has_version
        else None
    )
    return snapshot


def schema_differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Every place where two snapshots differ, as `path: actual ... expected ...` lines."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        lines = []
        for key in sorted(set(actual) | set(expected)):
            where = f"{path}.{key}" if path else str(key)
            if key not in expected:
                lines.append(f"{where}: only in the actual schema ({_short(actual[key])})")
            elif key not in actual:
                lines.append(f"{where}: missing from the actual schema ({_short(expected[key])})")
            else:
                lines.extend(schema_differences(actual[key], expected[key], where))
        return lines
    if _comparable(actual) != _comparable(expected):
        return [f"{path}: actual {actual!r}, expected {expected!r}"]
    return []


def assert_same_schema(actual: dict[str, Any], expected: dict[str, Any], what: str = "") -> None:
    """Fail with every difference when two snapshots are not the same schema."""
    differences = schema_differences(actual, expected)
    if differences:
        shown = "\n  ".join(differences[:60])
        more = f"\n  ... and {len(differences) - 60} more" if len(differences) > 60 else ""
        raise AssertionError(f"{what or 'schemas differ'}:\n  {shown}{more}")


def _comparable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    return value


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def relation_names(snapshot: dict[str, Any], schemas: Iterable[str]) -> set[str]:
    """The tables, views and sequences of `schemas` in a snapshot."""
    wanted = tuple(f"{schema}." for schema in schemas)
    return {name for name in snapshot["relations"] if name.startswith(wanted)}
