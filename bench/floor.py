"""The floor: a bare Flask endpoint that only parses the same JSON body and answers {"cards": []}.

    gunicorn -k gthread -w 2 --threads 4 bench.floor:app
"""

import orjson
from flask import Flask, Response, request

app = Flask("floor")


@app.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    orjson.loads(request.get_data())
    return Response(b'{"cards":[]}', mimetype="application/json")
