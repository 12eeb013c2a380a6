"""Extra check for the fuzz run: every error response is RFC 9457 problem+json."""
import json

import schemathesis


@schemathesis.check
def errors_are_problem_json(ctx, response, case):
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} answered with {content_type!r}, not problem+json"
    )
    body = json.loads(response.content)
    for field in ("type", "title", "status", "detail"):
        assert field in body, f"problem without {field!r}: {body}"
    assert body["status"] == response.status_code, body
    return None
