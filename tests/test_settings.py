"""Settings are read from the environment at call time, and only in slime_core.infra.settings."""

import subprocess
from pathlib import Path

from slime_core.infra import settings

REPO = Path(__file__).resolve().parent.parent


def test_cache_follows_the_environment_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("SLIME_CACHE", str(tmp_path / "c"))
    assert settings.embeddings_cache() == tmp_path / "c" / "embeddings"
    assert settings.api_embeddings_cache() == tmp_path / "c" / "embeddings"
    monkeypatch.setenv("SLIME_EMBED_CACHE", str(tmp_path / "api"))
    assert settings.api_embeddings_cache() == tmp_path / "api"
    monkeypatch.delenv("SLIME_CACHE")
    assert settings.cache_root() == Path.home() / ".cache" / "slime"


def test_blank_values_count_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("SLIME_DATA", "   ")
    assert settings.data_dir() != Path("   ")
    monkeypatch.setenv("SLIME_DATA", str(tmp_path))
    assert settings.data_dir() == tmp_path
    monkeypatch.setenv("SLIME_APP_THREADS", "3")
    assert settings.app_threads() == 3


def test_only_the_settings_module_reads_the_environment():
    out = subprocess.run(["git", "grep", "-n", "os.environ", "--", "slime_core", "app_pages", "app.py"],
                         cwd=REPO, capture_output=True, text=True).stdout
    assert {line.split(":")[0] for line in out.splitlines()} == {"slime_core/infra/settings.py"}
