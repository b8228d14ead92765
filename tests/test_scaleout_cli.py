"""``python -m bot check`` says how many instances are alive on the database."""

from __future__ import annotations

from pathlib import Path

from storage.postgres import PostgresStore
from tests.postgres_support import postgres_schema
from tests.support import SECRETS, bot_env, run_bot


async def test_check_names_the_live_instances_on_postgresql(tmp_path: Path) -> None:
    async with postgres_schema() as url:
        env = bot_env(tmp_path, **SECRETS, DATABASE_URL=url)
        code, out, err = await run_bot(["check"], env)
        assert code == 0, err
        assert "instances: 0 alive on this database;" in out  # no instance opened it yet
        stores = [PostgresStore(url), PostgresStore(url)]
        for store in stores:
            await store.open()
        try:
            code, out, err = await run_bot(["check"], env)
        finally:
            for store in stores:
                await store.close()
        assert code == 0, err
        ids = ", ".join(sorted(store.instance_id for store in stores))
        assert f"instances: 2 alive on this database ({ids});" in out


async def test_check_on_a_new_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    code, out, err = await run_bot(["check"], bot_env(tmp_path, **SECRETS))
    assert code == 0, err
    assert "instances: 0 alive on this database;" in out
    assert not (tmp_path / "bot.db").exists()
