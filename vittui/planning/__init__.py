"""Planning: memory and speed estimates for a Recipe and the model selector (no torch), the script export
(`codegen`), and the harness that checks the estimates (`measure`, torch)."""

from vittui.planning.dims import ModelDims
from vittui.planning.memory import MemoryEstimate, estimate

__all__ = ["MemoryEstimate", "ModelDims", "estimate"]
