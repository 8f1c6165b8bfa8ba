"""Config of the ``mqtt`` section: the daemon's only network peer."""

from pathlib import Path

from pydantic import Field

from daemon.schema import StrictModel


class TLSConfig(StrictModel):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip host name check (self-signed lab setups)")


class MQTTConfig(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = Field(None, description="file holding the password")
    tls: TLSConfig | None = None
    base_topic: str | None = Field(None, description="default veilcam/<camera name>")
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = Field(30, ge=5)
    queue_size: int = Field(1000, ge=1, description="events kept while disconnected")
    snapshot_interval_s: float = Field(30.0, ge=0, description="0 = only on events/requests")
