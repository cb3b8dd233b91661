"""The methods, one registry: a plain dict from an explicit list, each entry a :class:`Method`.

Every method is the same learner (``luminary.activity.learner``) with
different settings: what a session trains on (its new data, everything seen,
or new data plus an exemplar memory), what it distils from the model before
it, and which classifier scores the test samples.

=========== ============================================ ===========================================
name        what                                         source
=========== ============================================ ===========================================
finetune    new data only (the lower bound)              --
joint       all data seen so far (the upper bound)       --
replay      new data + herding exemplars, memory M       Rebuffi et al. 2017 (iCaRL's memory)
lwf         new data + distillation from the old model   Li & Hoiem 2016, arXiv 1606.09282
icarl       memory + sigmoid distillation, NME classifier Rebuffi et al. 2017, arXiv 1611.07725
prototype   cosine head on the base, prototypes after    CEC/FACT baseline (Zhang 2021; Zhou 2022)
supcon_cov  SupCon + CE on the base, covariance rule     ARIC FSCIL companion, arXiv 2409.03354
=========== ============================================ ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from luminary.core.errors import LuminaryError


@dataclass(frozen=True)
class Method:
    name: str
    display: str
    paper: str
    data: Literal["new", "all_seen", "memory"] = "new"
    distill: Literal["none", "lwf", "icarl"] = "none"
    classifier: Literal["linear", "nme", "prototype", "covariance"] = "linear"
    head: Literal["linear", "cosine"] = "linear"
    train_after_base: bool = True  # False: new sessions only add prototypes (the encoder is frozen)
    supcon: bool = False


_LIST = [
    Method("finetune", "Fine-tuning", "lower bound"),
    Method("joint", "Joint training", "upper bound", data="all_seen"),
    Method("replay", "Replay (herding)", "arXiv 1611.07725", data="memory"),
    Method("lwf", "LwF", "arXiv 1606.09282", distill="lwf"),
    Method("icarl", "iCaRL", "arXiv 1611.07725", data="memory", distill="icarl", classifier="nme"),
    Method("prototype", "Cosine prototypes", "CEC arXiv 2104.00953; FACT arXiv 2203.06953",
           classifier="prototype", head="cosine", train_after_base=False),
    Method("supcon_cov", "SupCon + covariance", "arXiv 2409.03354 (approximation)",
           classifier="covariance", head="cosine", train_after_base=False, supcon=True),
]
METHODS: dict[str, Method] = {m.name: m for m in _LIST}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise LuminaryError(f"unknown method '{name}' (one of {', '.join(METHODS)})")
    return METHODS[name]
