"""Recipe sections more than one task uses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compress.tasks.base import Section, build_config


class PruneParams(Section):
    """Unstructured pruning rounds by a registered pruner (compress/techniques.py PRUNERS)."""

    enabled: bool = Field(True, description="prune the distilled student")
    technique: Literal["sap", "magnitude"] = Field("sap", description="sap: PQ Index adaptive pruning "
                                                   "(Diao et al. 2023); magnitude: global magnitude baseline")
    scope: Literal["global", "layer", "neuron"] = Field("layer", description="where each pruning decision is made")
    p: float = Field(0.5, description="sap: PQ Index p (0 < p < q)")
    q: float = Field(1.0, description="sap: PQ Index q")
    eta: float = Field(0.0, description="sap: >= 0, more conservative when larger")
    gamma: float = Field(1.0, description="sap: > 0, scales the SAP bound (0.25 prunes a quarter of it)")
    beta: float = Field(0.9, description="sap: the most of a scope's survivors pruned in one round")
    amount: float = Field(0.2, description="magnitude only: fraction of surviving weights pruned per round")
    rounds: int = Field(1, ge=1, description="one-shot rounds")
    ignore: list[str] = Field(default_factory=list, description="module-name patterns left dense, e.g. [lm_head]")

    @model_validator(mode="after")
    def _valid_config(self):
        if self.enabled:
            self.to_config()
        return self

    def to_config(self):
        from compress.techniques import pruner

        technique = pruner(self.technique)
        fields = {f: getattr(self, f) for f in technique.config.__dataclass_fields__ if f in type(self).model_fields}
        fields["ignore"] = tuple(self.ignore)
        return build_config("prune", technique.config, **fields)
