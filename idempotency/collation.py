"""Keys and scopes compare byte for byte on every database.

MySQL and MariaDB give a new column the table's default collation, usually a case- and
accent-insensitive one (``utf8mb4_general_ci``, ``utf8mb4_0900_ai_ci``): under it the (scope, key)
unique index takes ``My-K1`` for ``my-k1`` and one tenant's scope for another's that differs only
in case or accents. The columns get a binary collation that does not pad with spaces either
(``'k' = 'k '`` holds under ``utf8mb4_bin``); PostgreSQL's and SQLite's defaults already compare
exactly.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

# The columns compared by the (scope, key) unique index.
EXACT_COLUMNS = ("scope", "key")


def exact_collation(connection: BaseDatabaseWrapper) -> str | None:
    """The collation that compares byte for byte on MySQL/MariaDB; None elsewhere."""
    if connection.vendor != "mysql":
        return None
    if getattr(connection, "mysql_is_mariadb", False):
        return "utf8mb4_nopad_bin"  # MariaDB 10.2+
    return "utf8mb4_0900_bin"  # MySQL 8.0.17+


def compares_exactly(collation: str | None) -> bool:
    """Whether a MySQL/MariaDB column collation compares values byte for byte."""
    if collation is None:  # a binary column (VARBINARY) has none
        return True
    name = collation.lower()
    return name == "binary" or (name.endswith("_bin") and ("nopad" in name or "0900" in name))


def column_collations(connection: BaseDatabaseWrapper, table: str) -> dict[str, str | None]:
    """The live collation of each of the table's exactly compared columns (MySQL/MariaDB)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            [table],
        )
        rows = cursor.fetchall()
    return {name: collation for name, collation in rows if name in EXACT_COLUMNS}
