"""``GET /jobs/{jobId}/status`` (and ``GET /jobs/{jobId}``, the ``Location`` of an accepted request): delivery
receipts. What became of the events of one job, from the read side (``schemas.read_api.EventReader.read_job``).

A job is answered only to its own tenant: the id is checked first against the tenant of the caller's token
(``schemas.jobs.JobIds.issued_to``, a keyed MAC: no store is asked), so another tenant's job, an id never issued
and a malformed one all get the same 404, at the same cost. A job the read side has no record of yet (its record
is still on its way to ClickHouse) is ``processing`` with ``accepted`` unknown, for as long as job records are kept.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway.errors import NotFoundError
from gateway.handlers.common import ask_reader, authorize_read
from gateway.keys import JOB_IDS, READER
from gateway.responses import json_response
from schemas.jobs import JOB_RETENTION_DAYS, issued_ms
from schemas.read_api import PROCESSING, JobStatus

UNKNOWN_JOB = "no such job for this client's tenant"


async def get_job_status(request: web.Request) -> web.Response:
    caller = authorize_read(request)
    job_id = request.match_info["jobId"]
    if not request.config_dict[JOB_IDS].issued_to(job_id, caller.tenant):
        raise NotFoundError(UNKNOWN_JOB)
    reader = request.config_dict.get(READER)
    if reader is None:
        raise NotFoundError("job status is not available: this gateway has no read side configured")
    status = await ask_reader(request, "job", reader.read_job(caller.tenant, job_id))
    if status is None:
        issued = issued_ms(job_id) or 0
        if time.time() * 1000 - issued > JOB_RETENTION_DAYS * 86_400_000:
            raise NotFoundError(UNKNOWN_JOB)  # expired: its record is gone
        status = JobStatus(job_id=job_id, status=PROCESSING, accepted=None)  # its record is on its way
    return json_response(status.to_json())
