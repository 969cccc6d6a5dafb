"""The function app: composes one Blueprint per area. No logic and no I/O at import time."""

import azure.functions as func

from functions.audit_runs import bp as audit_runs
from functions.evaluation import bp as evaluation
from functions.fanout import bp as fanout
from functions.http_api import bp as http_api
from functions.ingestion import bp as ingestion
from functions.notifications import bp as notifications
from functions.removals import bp as removals
from functions.webhooks import bp as webhooks

app = func.FunctionApp()
app.register_functions(ingestion)
app.register_functions(http_api)
app.register_functions(evaluation)
app.register_functions(fanout)
app.register_functions(removals)
app.register_functions(notifications)
app.register_functions(audit_runs)
app.register_functions(webhooks)
