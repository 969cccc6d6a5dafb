"""The HTTP API and the monitoring portal: one ASGI app (FastAPI) served by the function app
(``functions/http_api.py``) and by ``python -m shared.cli serve`` alike."""
