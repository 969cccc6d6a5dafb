"""The function app: composes one Blueprint per area. No logic and no I/O at import time."""

import azure.functions as func

from functions.ingestion import bp as ingestion

app = func.FunctionApp()
app.register_functions(ingestion)
