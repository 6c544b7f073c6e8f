"""Every SQL statement is prepared from constant text: no statement is built
from data. Reads the C sources; fails on any call into Connector/C's query
functions outside the places listed below, on any statement run through
run()/run_read() that is not a static const SQL_ string, and on any SQL
keyword written into a buffer with a printf-like function."""

import os
import re

import hatotest as H
from hatotest import check

SRC = os.environ.get("HATO_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
DIRS = ("core", "mail", "intake", "gateway", "routes", "conf", "sql", "ctl")

# Text queries that take no data, each with why it is not a prepared statement.
ALLOWED_TEXT_QUERIES = {
    ("sql/store.c", '"START TRANSACTION"'): "a constant",
    ("sql/store.c", "SQL_VERSION_TABLE"): "a constant DDL statement",
    ("sql/store.c", "p"): "apply_migration: the compiled-in migration files, split on ';'",
    ("sql/store.c", "q"): "create_database: an identifier (cannot be bound), checked to [A-Za-z0-9_] first",
}

QUERY_CALL = re.compile(r"\b(mysql_real_query|mysql_query|mysql_send_query)\s*\(\s*[^,]+,\s*([^,)]+)")
PREPARE_CALL = re.compile(r"\bmysql_stmt_prepare\s*\(\s*[^,]+,\s*([^,)]+)")
RUN_CALL = re.compile(r"\brun(?:_read)?\s*\(\s*s\s*,\s*([^,]+),")
PRINTF_SQL = re.compile(r"\b(?:s?n?printf|asprintf)\s*\([^;]*\"[^\"]*\b(SELECT|INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def sources():
    for d in DIRS:
        for root, _, files in os.walk(os.path.join(SRC, d)):
            for f in files:
                if f.endswith(".c"):
                    path = os.path.join(root, f)
                    yield os.path.relpath(path, SRC), open(path, encoding="utf-8").read()


def test_sql_is_constant_and_prepared():
    seen_prepare = 0
    for rel, text in sources():
        for m in QUERY_CALL.finditer(text):
            arg = m.group(2).strip()
            check((rel, arg) in ALLOWED_TEXT_QUERIES,
                  "%s: %s(..., %s) runs SQL text outside the prepared statements", rel, m.group(1), arg)
        for m in PREPARE_CALL.finditer(text):
            seen_prepare += 1
            check(rel == "sql/store.c" and m.group(1).strip() == "sql",
                  "%s: mysql_stmt_prepare of %s outside the statement cache", rel, m.group(1))
        for m in RUN_CALL.finditer(text):
            arg = m.group(1).strip()
            # run_read() passes its own (checked) argument on to run().
            ok = (rel == "sql/store.c" and arg == "sql") or re.fullmatch(r"SQL_[A-Z0-9_]+", arg) or re.fullmatch(
                r"[a-z_]+ == 1 \? SQL_[A-Z0-9_]+ : SQL_[A-Z0-9_]+", arg) or re.fullmatch(
                r"take == 1 \? SQL_[A-Z0-9_]+ : SQL_[A-Z0-9_]+", arg)
            check(ok, "%s: run(s, %s, ...) is not a constant SQL_ statement", rel, arg)
        for m in PRINTF_SQL.finditer(text):
            check(False, "%s: SQL written with a printf-like call: %s", rel, m.group(0)[:120])
    # The statements themselves are constants: every SQL_ used is declared
    # "static const char SQL_...[]".
    store = open(os.path.join(SRC, "sql", "store.c"), encoding="utf-8").read()
    used = set(re.findall(r"\b(SQL_[A-Z0-9_]+)\b", store))
    declared = set(re.findall(r"static const char (SQL_[A-Z0-9_]+)\[\]", store))
    check(used <= declared, "SQL_ names used but not declared static const: %r", sorted(used - declared))
    check(seen_prepare == 1, "expected one prepare (the statement cache), found %d", seen_prepare)
    H.log("%d constant statements in sql/store.c" % len(declared))


if __name__ == "__main__":
    H.main(globals())
