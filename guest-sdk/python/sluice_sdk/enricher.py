"""`Enricher`: async enrichers (Flink's Async I/O), the operators of the
`enricher-operator` world. The loop is `Transform`'s; what differs is
the world (it can call `sluice_sdk.http`) and how the host runs it."""

from .transform import Transform

__all__ = ["Enricher"]


class Enricher(Transform):
    """An async enricher: a `Transform` that may ask an outside service
    (`sluice_sdk.http`) about each record. Subclass it in a module and build
    the module with `guest-sdk/python/build`:

        from sluice_sdk import Enricher, http

        class Tier(Enricher):
            def open(self, config):
                self.url = config.json()["url"]

            def process(self, record, out):
                order = record.json()
                customer = http.get(self.url + order["customer_id"]).ok().json()
                order["tier"] = customer["tier"]
                out.emit_json(order)

    The API is `Transform`'s: `open(self, config)` once per instance, then
    `process(self, record, out)`, emitting zero or more records. The host
    runs up to `enricher.capacity` instances at once per subtask and gives each
    one record per call, so `process` may block in `http` calls without
    holding up the others.

    An exception raised by `process` means "this attempt failed": the host
    tries the record again (on any instance) with backoff, up to
    `enricher.retries` times, then sends it to the dead-letter sink with the
    last message. What an attempt emitted before failing is discarded, so
    `process` may be retried safely as long as the service calls it makes
    are. A call that takes longer than `enricher.timeout` is a failed attempt
    too. An exception raised by `open` stops the job.
    """
