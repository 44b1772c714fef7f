from pathlib import Path

from mailsvc.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
DEPLOYMENT_ONLY = {"POSTGRES_PASSWORD"}


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    settings = {name.upper() for name in Settings.model_fields}
    assert documented - DEPLOYMENT_ONLY == settings
