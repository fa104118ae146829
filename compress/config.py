"""Base class of every technique config (`PQIPruneConfig`, `Int8Config`, `KDConfig`, ...).

Configs are dataclasses validated in `__post_init__` and serialisable with a `version`, so a
recipe hash and an export's metadata can record exactly which parameters produced an artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar


@dataclasses.dataclass
class CompressConfig:
    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "version": self.version, **dataclasses.asdict(self)}

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()
