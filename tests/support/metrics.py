"""The service's metrics as a test reads them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kernels_service.testing.service import Service


def scrape(service: Service, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample, keyed by name and sorted labels."""
    status, headers, body = service.request("GET", "metrics", token=token)
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, body)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def socketio_sessions(service: Service) -> float:
    """Open Engine.IO sessions, as the connections gauge counts them."""
    return value(scrape(service), "kernels_service_connections", transport="socketio")
