"""`customer-tier` in Python: an async enricher that adds each order's
customer tier, asked of an HTTP service. The same operator as the Rust
`examples/operators/customer-tier`, record for record (its output is
byte-identical).

For an order `{"order_id":"o-1","customer_id":"c-7",...}` it sends
`GET <url>c-7` and expects `200` with `{"tier":"gold",...}`; it emits the
order with `"tier":"gold"` added (key, timestamp and headers kept). Any other
status, a body that is not such JSON, or a transport failure is an error for
this attempt: the host retries the record (`enricher.retries`), then sends it to
the dead-letter sink.

Config: `{"url": "http://127.0.0.1:8080/customers/"}` (required; the
customer id is appended; unknown fields are an error). The spec must grant
the service's address: `grants: { network: ["127.0.0.1:8080"] }`. See
`examples/enricher/orders-tier.yaml` (`TIER_MODULE=customer_tier_py.wasm`).

Build (from the repository root):

    guest-sdk/python/build examples/python/customer_tier.py customer_tier_py.wasm

or `guest-sdk/python/build-examples.sh OUTDIR` for all the Python examples.
"""

from dataclasses import dataclass

from sluice_sdk import Enricher, Error, dumps, float_json, http, json_kind


@dataclass
class Settings:
    url: str = ""


@dataclass
class Customer:
    """What the service answers (other fields are ignored)."""
    tier: str


def serde_json(v):
    """`v` as JSON text the way the Rust module writes it (a serde_json
    `Value`): object keys sorted, as its `Map` keeps them, and floats as ryu
    writes them."""
    t = type(v)
    if t is dict:
        return "{" + ",".join(dumps(k) + ":" + serde_json(v[k]) for k in sorted(v)) + "}"
    if t is list:
        return "[" + ",".join(serde_json(x) for x in v) + "]"
    if t is float:
        return float_json(v)
    return dumps(v)


class CustomerTier(Enricher):
    def open(self, config):
        url = config.parse(Settings).url
        if not url:
            raise Error("config needs `url`, the service's address (customer ids are appended)")
        self.url = url

    def process(self, record, out):
        order = record.json()
        if type(order) is not dict:
            raise Error(f"invalid type: {json_kind(order)}, expected a map")
        customer_id = order.get("customer_id")
        if type(customer_id) is not str:
            raise Error("the order has no string customer_id")
        customer = http.get(f"{self.url}{customer_id}").ok().json(Customer)
        order["tier"] = customer.tier
        out.emit(serde_json(order))
