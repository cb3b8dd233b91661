from luminary.models.crystal.configuration_crystal import CrystalConfig
from luminary.models.crystal.modeling_crystal import CrystalForCausalLM, CrystalModel

__all__ = ["CrystalConfig", "CrystalForCausalLM", "CrystalModel"]
