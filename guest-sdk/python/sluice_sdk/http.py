"""Outbound HTTP for async enrichers (`sluice_sdk.Enricher`).

    from sluice_sdk import http

    customer = http.get(f"{self.url}{customer_id}").ok().json()

Plain `http://` only, and only to the hosts and ports the pipeline spec
grants the operator (`grants.network`): a request anywhere else stops the job
with an error naming the operator and the host (the module cannot catch it).
The host bounds each call of `process` by the operator's `enricher.timeout`, so
these functions have no timeout of their own; each instance keeps one
connection alive between calls. The calls block: the host gets concurrency
by running up to `enricher.capacity` instances at once, each on one record.

The same functions as the Rust SDK's `sluice_guest::http`, with the same
error messages (but Python's JSON messages: `Expecting value at line 1
column 1` where serde says `expected value at line 1 column 1`).
"""

from ._core import Error, _from_json, loads

__all__ = ["Response", "fetch", "get"]

# The bindings' `http` import and its error type, set by `_bind` (the
# generated `wit_world.imports.http` in the enricher world, a stand-in in unit
# tests).
_http = None
_Err = None

# How much of a body an error message quotes, in bytes (as the Rust SDK).
_QUOTED = 60


def _bind(http_module, err_type):
    global _http, _Err
    _http = http_module
    _Err = err_type


def _rust_debug(text):
    """`text` quoted as Rust's `{:?}` writes a string: double quotes, with
    `"`, `\\`, newlines, tabs and other unprintable characters escaped."""
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif c.isprintable():
            out.append(c)
        else:
            out.append("\\u{%x}" % ord(c))
    out.append('"')
    return "".join(out)


class Response:
    """A response: any status (check it with `ok()`), the headers as a list
    of `(name, value)` strings, and the whole body as bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers=(), body=b""):
        self.status = status
        self.headers = list(headers)
        self.body = bytes(body)

    def __repr__(self):
        return f"Response(status={self.status}, headers={self.headers!r}, body={self._start()})"

    def _start(self):
        """The start of the body, quoted (for error messages)."""
        return _rust_debug(self.body[:_QUOTED].decode("utf-8", "replace"))

    def text(self):
        """The body as text; an `Error` if it is not UTF-8."""
        try:
            return self.body.decode()
        except UnicodeDecodeError as e:
            raise Error(f"the response body is not UTF-8: {e}") from None

    def json(self, schema=None):
        """The body parsed as JSON; with a dataclass `schema`, an instance of
        it (fields without a default are required, other fields of the body
        are ignored, simple annotations are checked as in
        `Config.parse`). The error quotes the start of the body:

            the response body is not the JSON expected (Expecting value at
            line 1 column 1): "<html>..."
        """
        try:
            try:
                text = self.body.decode()
            except UnicodeDecodeError as e:
                raise ValueError(f"not UTF-8: {e}") from None
            try:
                value = loads(text)
            except Error as e:
                raise ValueError(str(e)) from None
            if schema is not None:
                value = _from_json(value, schema, deny_unknown=False)
            return value
        except ValueError as e:
            raise self.not_expected(str(e)) from None

    def not_expected(self, why):
        """The `Error` `json()` raises, for a check of your own: `raise
        response.not_expected("no string `tier`")`."""
        return Error(f"the response body is not the JSON expected ({why}): {self._start()}")

    def ok(self):
        """This response if its status is 2xx, else an `Error` naming the
        status and quoting the start of the body: `HTTP status 500: "..."`."""
        if 200 <= self.status < 300:
            return self
        raise Error(f"HTTP status {self.status}: {self._start()}")

    def header(self, name):
        """The value of the first header called `name` (case-insensitive), or
        `None`."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


def fetch(method, url, headers=(), body=b""):
    """Sends a request and reads the whole response: a `Response` whatever
    its status. `headers` is a list of `(name, value)` strings (or a dict),
    `body` bytes or a str (sent as UTF-8). A transport failure (connection
    refused, closed, a reply that is not HTTP) raises an `Error`."""
    if _http is None:
        raise Error("sluice_sdk.http is only available to enrichers (subclass sluice_sdk.Enricher)")
    if isinstance(headers, dict):
        headers = headers.items()
    if type(body) is str:
        body = body.encode()
    request = _http.Request(method, url, [(str(n), str(v)) for n, v in headers], bytes(body))
    try:
        r = _http.fetch(request)
    except _Err as e:
        raise Error(str(e.value)) from None
    return Response(r.status, r.headers, r.body)


def get(url, headers=()):
    """`GET url` (see `fetch`)."""
    return fetch("GET", url, headers)
