"""The MQTT topics of one stack (docs/integrations.md), in one place for the sink, HA discovery and tests."""


def status_topic(prefix: str, stack: str) -> str:
    return f"{prefix}/{stack}/status"


def track_topic(prefix: str, stack: str, event: str) -> str:
    return f"{prefix}/{stack}/tracks/{event}"


def metrics_topic(prefix: str, stack: str, service: str) -> str:
    return f"{prefix}/{stack}/metrics/{service}"


def snapshot_topic(prefix: str, stack: str) -> str:
    """Raw JPEG bytes of the latest face snapshot, retained (Home Assistant's image entity reads it)."""
    return f"{prefix}/{stack}/snapshot"


def faces_topic(prefix: str, stack: str) -> str:
    """Retained {"present", "count", "name"}: the faces now (Home Assistant's sensors read it)."""
    return f"{prefix}/{stack}/faces"
