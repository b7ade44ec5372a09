"""``tbens serve``: the ensemble as a long-running HTTP triage service (FastAPI + uvicorn, the ``serve`` extra).

Never imports TensorFlow; decisions come from ``engine.api``, the same step the CLI and notebooks use."""
