"""Folder names and defaults, in one place (imported as ``c``)."""

from __future__ import annotations

PROFILES_FILE = "profiles.yml"
PROJECT_FILE = "tierpool_project.yml"
PROFILE_NAME = "tierpool"
TARGET_ENV = "TIERPOOL_TARGET"

SQL_DIR = "sql"
PYTHON_MODELS_DIR = "python_models"
SEEDS_DIR = "seeds"
TESTS_DIR = "tests"
DATA_TESTS_DIR = "tests/data"
TARGET_DIR = "target"

DEFAULT_DB_PATH = "target/warehouse.duckdb"
MANIFEST_FILE = "manifest.json"
RUN_RESULTS_FILE = "run_results.json"
LOCK_FILE = "tierpool.core.lock"

MATERIALIZATIONS = ("view", "table", "append", "incremental")
DEFAULT_SQL_MATERIALIZATION = "view"
DEFAULT_PYTHON_MATERIALIZATION = "table"
