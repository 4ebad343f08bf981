"""Bounds on what one API request may ask the server to hold: the size of a JSON body, how deeply
it nests, and numbers that overflow. Each refusal is JSON naming the reason (a 413 for the size,
a 400 for the rest), never Django's HTML error page or a 500.

    BoundedJSONParser   the API's JSON parser (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])
    exception_handler   REST_FRAMEWORK["EXCEPTION_HANDLER"]: Django's body-size errors as JSON
    body_too_large      the 413 body, shared with nasweb.middleware.ApiBodyLimit
"""

from __future__ import annotations

import codecs
import json
import math

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.utils.json import strict_constant
from rest_framework.views import exception_handler as drf_exception_handler

from ..uploads import human_bytes


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_too_large(size: int | None = None) -> dict:
    size_text = f"is {human_bytes(size)}, over" if size else "is larger than"
    return {"detail": f"The request body {size_text} the limit of {human_bytes(body_limit())} "
                      "(DATA_UPLOAD_MAX_MEMORY_SIZE); send less, or upload files as multipart.",
            "code": "body_too_large"}  # fmt: skip


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"

    def __init__(self, size: int | None = None):
        super().__init__(body_too_large(size)["detail"])


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf, which no column or option can hold
        raise ValueError(f"number {text} is out of range")
    return value


def too_deep(value, limit: int) -> bool:
    """Whether `value` nests lists/objects deeper than `limit`; iterative, so any depth is safe."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class BoundedJSONParser(JSONParser):
    """JSONParser that reads at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (DRF reads the stream
    itself, past Django's own check), refuses NaN/Infinity and numbers that overflow to them, and
    refuses nesting deeper than API_JSON_MAX_DEPTH (Python's decoder would hit its recursion limit)."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return None
        limit = body_limit()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=strict_constant if self.strict else None,
                              parse_float=_finite_float)  # fmt: skip
        except RecursionError:
            data = None
            deep = True
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ParseError(f"JSON parse error - {exc}") from None
        else:
            deep = too_deep(data, settings.API_JSON_MAX_DEPTH) if isinstance(data, dict | list) else False
        if deep:
            raise ParseError(f"JSON parse error - the body nests deeper than {settings.API_JSON_MAX_DEPTH} "
                             "levels (API_JSON_MAX_DEPTH)")  # fmt: skip
        return data


def exception_handler(exc, context):
    """DRF's handler, plus Django's limits on form and multipart bodies as JSON."""
    if isinstance(exc, RequestDataTooBig):
        return Response(body_too_large(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        setting = "DATA_UPLOAD_MAX_NUMBER_FIELDS" if isinstance(exc, TooManyFieldsSent) else \
            "DATA_UPLOAD_MAX_NUMBER_FILES"  # fmt: skip
        return Response({"detail": f"The request has too many fields or files ({setting}).",
                         "code": "too_many_fields"}, status=status.HTTP_400_BAD_REQUEST)  # fmt: skip
    return drf_exception_handler(exc, context)
