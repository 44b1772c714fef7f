"""Operations: migrations, startup checks, health and readiness."""
