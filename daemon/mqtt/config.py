"""Config of the ``mqtt`` section: the daemon's only network peer (Home Assistant's broker)."""

from pathlib import Path

from pydantic import Field, model_validator

from daemon.schema import StrictModel

# MQTT topic levels we build from config: no wildcards, no empty levels, no leading/trailing '/'
_TOPIC = r"^[^#+/\s]([^#+\s]*[^#+/\s])?$"


class TLSConfig(StrictModel):
    ca_file: Path = Field(description="CA certificate (PEM) that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate (PEM), if the broker asks")
    key_file: Path | None = Field(None, description="client private key (PEM)")
    insecure: bool = Field(False, description="skip host name check (self-signed lab setups)")

    @model_validator(mode="after")
    def _pair(self) -> "TLSConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MQTTConfig(StrictModel):
    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, gt=0, lt=65536)
    client_id: str | None = Field(
        None, min_length=1, max_length=64, description="default veilcam-<camera name>"
    )
    username: str | None = Field(None, min_length=1)
    password_file: Path | None = Field(None, description="file holding the password")
    tls: TLSConfig | None = None
    base_topic: str | None = Field(
        None, pattern=_TOPIC, description="default veilcam/<camera name>"
    )
    discovery_prefix: str = Field("homeassistant", pattern=_TOPIC)
    discovery: bool = Field(True, description="announce the device to Home Assistant")
    keepalive_s: int = Field(30, ge=5, le=3600)
    retry_initial_s: float = Field(1.0, gt=0, le=60, description="first reconnect wait")
    retry_max_s: float = Field(60.0, gt=0, le=3600, description="longest reconnect wait")
    queue_size: int = Field(1000, ge=1, le=100_000, description="events kept while disconnected")
    snapshot_interval_s: float = Field(
        30.0, ge=0, le=86_400, description="0 = only on events/requests"
    )
    snapshot_on_events: bool = Field(True, description="a snapshot on each face event")
    event_update_min_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="at most one `update` event per this many seconds (the latest is sent when "
        "due); `start` and `end` are never delayed. 0 = every change",
    )
    event_snapshot_min_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="at most one event snapshot per this many seconds; a `start` always gets "
        "one. 0 = one per event message",
    )
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality")
    snapshot_max_width: int = Field(
        1280, ge=0, le=16384, description="downscale wider frames; 0 = never"
    )

    @model_validator(mode="after")
    def _checks(self) -> "MQTTConfig":
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self

    def topic_base(self, camera: str) -> str:
        return self.base_topic or f"veilcam/{camera}"

    def resolved_client_id(self, camera: str) -> str:
        return self.client_id or f"veilcam-{camera}"
